"""Leader failover on a local KRaft cluster: how long a partition refuses acks=all writes
after the node leading it is SIGKILLed.

Used by tests/integration/test_local_cluster.py, and on its own to measure
(figures in docs/decisions/0009-local-kafka-cluster.md)::

    PYTHONPATH=$PWD python -m tests.failover --runs 6

which starts a 3-node cluster in a temporary home on free ports, kills the
node leading partitions of an RF-3 topic ``--runs`` times, the quorum
leader every other time (restarting it in between), and prints the seconds
from the kill to the first acknowledged write on a partition it led.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack.broker.cluster import LocalCluster
from devstack.ports import free_port_run
from devstack.processes import kill
from runtime.settings import Settings
from runtime.waiting import wait_until_async


async def create_topic(bootstrap: str, topic: str, partitions: int = 6, rf: int = 3,
                       timeout_s: float = 30.0, options: Options = None) -> None:
    """Create ``topic`` and wait until every partition has a leader and all ``rf`` in sync."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, rf)])
    finally:
        await admin.close()
    await wait_in_sync(bootstrap, topic, rf, timeout_s, options)


async def in_sync_replicas(bootstrap: str, topic: str,
                           options: Options = None) -> dict[int, tuple[int, list[int]]]:
    """partition -> (leader id, in-sync replica ids) as the cluster reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"]: (p["leader"], list(p["isr"]))
            for p in described["partitions"]}


async def wait_in_sync(bootstrap: str, topic: str, rf: int, timeout_s: float,
                       options: Options = None) -> None:
    """Raises runtime.waiting.TimedOut unless every partition has ``rf`` in-sync replicas in time."""
    async def full() -> bool:
        isr = await in_sync_replicas(bootstrap, topic, options)
        return bool(isr) and all(len(r) == rf and leader >= 0 for leader, r in isr.values())

    await wait_until_async(full, timeout_s, f"{topic}: {rf} in-sync replicas everywhere")


def producer(bootstrap: str, request_timeout_ms: int = 30_000,
             retry_backoff_ms: int = 100, options: Options = None) -> AIOKafkaProducer:
    """An acks=all idempotent producer, like the origin's, with the given timings."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                            **(options or {}),
                            linger_ms=1, request_timeout_ms=request_timeout_ms,
                            retry_backoff_ms=retry_backoff_ms)


# aiokafka keyword arguments for the cluster's security (None: plaintext).
Options = Mapping[str, Any] | None


def admin_options(cluster: LocalCluster) -> dict[str, Any]:
    """How the tools here connect to the local ``cluster``: as its admin role."""
    return cluster.brokers[0].access().aiokafka_options()


@dataclass(frozen=True)
class Failover:
    victim: int               # the node killed
    was_quorum_leader: bool   # it also led the KRaft controller quorum
    unavailable_s: float      # kill -> first acks=all write acknowledged on a partition it led


async def kill_partition_leader(cluster: LocalCluster, topic: str, quorum_leader: bool = False,
                                retry_backoff_ms: int = 100) -> Failover:
    """SIGKILL a node that leads partitions of ``topic`` and time a write to one of them.

    The node is the leader of partition 0 or, with ``quorum_leader``, the
    node leading the KRaft quorum (the active controller), whose loss also
    costs a controller election.
    """
    bootstrap = cluster.bootstrap_servers
    prod = producer(bootstrap, retry_backoff_ms=retry_backoff_ms, options=admin_options(cluster))
    await prod.start()
    try:
        await prod.send_and_wait(topic, b"warm-up", partition=0)
        status = cluster.status()
        assert status.leader is not None and status.leader.leader_id is not None
        if quorum_leader:
            victim = status.leader.leader_id
            led = sorted(tp.partition for tp in prod.client.cluster.partitions_for_broker(victim)
                         or () if tp.topic == topic)
            assert led, f"the quorum leader, node {victim}, leads no partition of {topic}"
            partition = led[0]
        else:
            victim, partition = prod.client.cluster.leader_for_partition(TopicPartition(topic, 0)), 0
        pid = next(n.pid for n in status.nodes if n.node_id == victim)
        assert pid is not None, f"node {victim} leads partition {partition} but does not run"
        killed = time.monotonic()
        kill(pid)
        await prod.send_and_wait(topic, b"after the kill", partition=partition)
        return Failover(victim, status.leader.leader_id == victim, time.monotonic() - killed)
    finally:
        await prod.stop()


async def measure(runs: int, home: Path) -> list[Failover]:
    """Start a 3-node cluster in ``home``, kill a partition leader ``runs`` times, stop it."""
    base = free_port_run(6)
    settings = Settings(home=home, kafka_listen=f"127.0.0.1:{base}", kafka_nodes=3)
    cluster = LocalCluster(settings)
    await asyncio.to_thread(cluster.start)
    results = []
    try:
        await create_topic(cluster.bootstrap_servers, "failover", options=admin_options(cluster))
        for run in range(runs):
            result = await kill_partition_leader(cluster, "failover", quorum_leader=run % 2 == 0)
            results.append(result)
            print(f"node {result.victim} killed (quorum leader: {result.was_quorum_leader}): "
                  f"its partition unavailable {result.unavailable_s:.2f} s", flush=True)
            await asyncio.to_thread(cluster.start)
            await wait_in_sync(cluster.bootstrap_servers, "failover", 3, 60,
                               admin_options(cluster))
    finally:
        await asyncio.to_thread(cluster.stop)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # one error line per retry
    with tempfile.TemporaryDirectory(prefix="failover-") as home:
        results = asyncio.run(measure(args.runs, Path(home)))
    for quorum in (True, False):
        times = sorted(r.unavailable_s for r in results if r.was_quorum_leader == quorum)
        if times:
            print(f"{'quorum leader' if quorum else 'other node'} killed: unavailable s min "
                  f"{times[0]:.2f}, median {statistics.median(times):.2f}, max {times[-1]:.2f} "
                  f"over {len(times)} kills")


if __name__ == "__main__":
    main()
