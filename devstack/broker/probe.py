"""Asking a Kafka cluster whether it answers metadata requests."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient

from runtime.kafka_security import KafkaAccess

log = logging.getLogger(__name__)


async def cluster_brokers(bootstrap_servers: str, access: KafkaAccess,
                          timeout_s: float = 5.0) -> int:
    """Number of brokers the cluster reports; raises if it does not answer."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000),
        **access.aiokafka_options())
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return len(cluster["brokers"])
    finally:
        await admin.close()


def count_brokers(bootstrap_servers: str, access: KafkaAccess, timeout_s: float = 5.0) -> int:
    """Number of brokers the cluster reports; 0 if it does not answer (logged at debug)."""
    try:
        return asyncio.run(cluster_brokers(bootstrap_servers, access, timeout_s))
    except Exception as exc:  # any failure means "not answering yet"; say which
        log.debug("metadata probe of %s failed: %r", bootstrap_servers, exc)
        return 0


async def _brokers_seen_by(address: str, access: KafkaAccess, timeout_s: float) -> int:
    """Brokers in the metadata of the node at ``address`` itself (a client's bootstrap
    asks that node; an admin client's describe_cluster may ask another)."""
    client = AIOKafkaClient(bootstrap_servers=address, request_timeout_ms=int(timeout_s * 1000),
                            metadata_max_age_ms=3_600_000, **access.aiokafka_options())
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return len(client.cluster.brokers())
    finally:
        await client.close()


def every_node_sees(addresses: list[str], brokers: int, access: KafkaAccess,
                    timeout_s: float = 5.0) -> bool:
    """Whether the node at each of ``addresses`` reports ``brokers`` brokers.

    Just after a cluster starts, one node may already report every broker
    while another's metadata still lacks some: a client asking that node
    would count too few (and create topics with too few replicas).
    """
    async def all_see() -> bool:
        counts = await asyncio.gather(*(_brokers_seen_by(a, access, timeout_s) for a in addresses))
        return all(count == brokers for count in counts)

    try:
        return asyncio.run(all_see())
    except Exception as exc:  # not answering yet
        log.debug("metadata probe of %s failed: %r", addresses, exc)
        return False


def answers_metadata(bootstrap_servers: str, access: KafkaAccess, timeout_s: float = 5.0) -> bool:
    """Whether the cluster answers a metadata request with at least one broker."""
    return count_brokers(bootstrap_servers, access, timeout_s) > 0
