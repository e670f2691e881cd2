"""The Kafka brokers as the status view sees them, and what is wrong with them.

The local cluster (``positioning kafka start``) is known node by node: its
processes and the KRaft quorum's leader (devstack/broker/cluster.py). An
external cluster (``KAFKA_BOOTSTRAP_SERVERS``) is known only by what it says
of itself: the brokers in its metadata.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from devstack.broker.cluster import ClusterStatus, LocalCluster
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings


@dataclass(frozen=True)
class Broker:
    node_id: int
    address: str
    up: bool
    pid: int | None = None    # local nodes only


@dataclass(frozen=True)
class Brokers:
    """The brokers, the KRaft quorum leader (local clusters only), and why they are unhealthy."""

    external: bool
    bootstrap_servers: str
    nodes: tuple[Broker, ...]
    leader: int | None
    problems: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"external": self.external, "bootstrap_servers": self.bootstrap_servers,
                "leader": self.leader,
                "nodes": [{"node_id": n.node_id, "address": n.address, "up": n.up, "pid": n.pid}
                          for n in self.nodes]}


def local_brokers(settings: Settings, status: ClusterStatus) -> Brokers:
    """The local cluster: a node whose process is not running, or no quorum leader, is a problem."""
    nodes = tuple(Broker(n.node_id, n.address, n.running, n.pid) for n in status.nodes)
    leader = status.leader.leader_id if status.leader is not None else None
    problems = [f"kafka node {n.node_id} ({n.address}) is not running" for n in nodes if not n.up]
    if leader is None and any(n.up for n in nodes):
        problems.append("kafka: no quorum leader")
    return Brokers(False, settings.bootstrap_servers, nodes, leader, tuple(problems))


def external_brokers(settings: Settings, cluster: dict[str, Any]) -> Brokers:
    """An external cluster from its ``describe_cluster`` answer.

    Only what the cluster reports can be checked: a cluster reporting fewer
    brokers than ``KAFKA_BOOTSTRAP_SERVERS`` lists is missing one (a list
    naming a subset of the brokers, or one load-balanced name, is fine). The
    quorum leader is not known from outside: a KRaft cluster answers clients
    with some broker as its "controller", not the quorum's leader.
    """
    nodes = tuple(Broker(b["node_id"], f"{b['host']}:{b['port']}", True)
                  for b in sorted(cluster["brokers"], key=lambda b: b["node_id"]))
    listed = {s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()}
    problems = []
    if not nodes:
        problems.append("kafka: the cluster reports no broker")
    elif len(nodes) < len(listed):
        problems.append(f"kafka: {len(listed)} bootstrap servers listed, the cluster reports "
                        f"{len(nodes)} broker(s)")
    return Brokers(True, settings.bootstrap_servers, nodes, None, tuple(problems))


async def brokers(settings: Settings, timeout_s: float) -> Brokers:
    """The brokers of the settings' cluster, local or external.

    Raises:
        aiokafka.errors.KafkaError: an external cluster did not answer within ``timeout_s``.
    """
    if not settings.uses_external_kafka:
        status = await asyncio.to_thread(LocalCluster(settings).status)
        return local_brokers(settings, status)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.OPS),
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return external_brokers(settings, cluster)
