"""Asking a Kafka cluster whether it answers metadata requests."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger(__name__)


async def cluster_brokers(bootstrap_servers: str, timeout_s: float = 5.0) -> int:
    """Number of brokers the cluster reports; raises if it does not answer."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return len(cluster["brokers"])
    finally:
        await admin.close()


def count_brokers(bootstrap_servers: str, timeout_s: float = 5.0) -> int:
    """Number of brokers the cluster reports; 0 if it does not answer (logged at debug)."""
    try:
        return asyncio.run(cluster_brokers(bootstrap_servers, timeout_s))
    except Exception as exc:  # any failure means "not answering yet"; say which
        log.debug("metadata probe of %s failed: %r", bootstrap_servers, exc)
        return 0


def answers_metadata(bootstrap_servers: str, timeout_s: float = 5.0) -> bool:
    """Whether the cluster answers a metadata request with at least one broker."""
    return count_brokers(bootstrap_servers, timeout_s) > 0
