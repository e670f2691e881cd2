"""`positioning kafka start / status / stop --nodes 3`: a 3-node KRaft cluster of this test's own,
which loses a node in the middle of acks=all writes and loses no acknowledged record."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.broker.cluster import LocalCluster
from devstack.ports import free_port_run
from devstack.processes import kill, pid_alive
from runtime.settings import Settings
from runtime.waiting import wait_until_async
from tests.failover import admin_options, create_topic, producer

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

NODES = 3
PARTITIONS = 6


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    settings = Settings(home=tmp_path, kafka_listen=f"127.0.0.1:{free_port_run(2 * NODES)}",
                        kafka_nodes=NODES)
    local = LocalCluster(settings)
    try:
        yield local
    finally:
        local.stop(timeout_s=10)


def _cli(cluster: LocalCluster, *args: str, nodes: bool = True) -> subprocess.CompletedProcess[str]:
    """`positioning ARGS` in the cluster's home; ``nodes=False``: with no number of nodes
    in the environment."""
    env = {**os.environ, "POSITIONING_HOME": str(cluster.settings.home),
           "POSITIONING_KAFKA_LISTEN": cluster.settings.kafka_listen,
           "POSITIONING_KAFKA_NODES": str(NODES)}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    if not nodes:
        del env["POSITIONING_KAFKA_NODES"]
    return subprocess.run([sys.executable, "-m", "cli.main", *args],
                          capture_output=True, text=True, env=env, timeout=180)


class Stream:
    """Writes numbered records with acks=all, round the partitions, until stopped;
    remembers which the cluster acknowledged and which failed."""

    def __init__(self, bootstrap: str, topic: str, options: dict[str, Any]) -> None:
        self.producer = producer(bootstrap, request_timeout_ms=30_000, options=options)
        self.topic = topic
        self.acked: set[bytes] = set()
        self.failed: list[BaseException] = []
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        await self.producer.start()
        try:
            n = 0
            while not self.stopping.is_set():
                window = []
                for _ in range(20):
                    value = str(n).encode()
                    window.append((value, await self.producer.send(
                        self.topic, value, partition=n % PARTITIONS)))
                    n += 1
                for value, ack in window:
                    try:
                        await ack
                        self.acked.add(value)
                    except Exception as exc:  # counted: the test asserts there are none
                        self.failed.append(exc)
        finally:
            await self.producer.stop()

    async def acked_at_least(self, count: int, timeout_s: float) -> None:
        async def enough() -> bool:
            return len(self.acked) >= count

        await wait_until_async(enough, timeout_s, f"{count} acknowledged records")


async def _read_all(bootstrap: str, topic: str, expected: set[bytes],
                    options: dict[str, Any]) -> set[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                **options,
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    seen: set[bytes] = set()
    try:
        async def caught_up() -> bool:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                seen.update(r.value for r in records if r.value is not None)
            return expected <= seen

        await wait_until_async(caught_up, 60, "every acknowledged record to be read back")
    finally:
        await consumer.stop()
    return seen


async def test_three_nodes_lose_one_mid_stream_and_no_acked_record(cluster: LocalCluster) -> None:
    started = await asyncio.to_thread(_cli, cluster, "kafka", "start")
    assert started.returncode == 0, started.stderr
    shown = await asyncio.to_thread(_cli, cluster, "kafka", "status")
    assert shown.returncode == 0, shown.stdout
    assert shown.stdout.count(" running (pid ") == NODES
    assert "quorum leader: node " in shown.stdout
    # A plain `kafka status` in the home finds its three nodes too; a 1-node start there
    # is refused (the home's state belongs to its 3-node cluster).
    plain = await asyncio.to_thread(_cli, cluster, "kafka", "status", nodes=False)
    assert plain.returncode == 0 and plain.stdout.count(" running (pid ") == NODES, plain.stdout
    single = await asyncio.to_thread(_cli, cluster, "kafka", "start", nodes=False)
    assert single.returncode == 1 and "holds a 3-node cluster" in single.stderr, single.stderr
    status = cluster.status()
    assert status.all_running and status.leader is not None
    pids = [n.pid for n in status.nodes if n.pid is not None]

    bootstrap = cluster.bootstrap_servers
    topic = f"cluster-{uuid.uuid4().hex[:8]}"
    options = admin_options(cluster)
    await create_topic(bootstrap, topic, PARTITIONS, rf=NODES, options=options)
    stream = Stream(bootstrap, topic, options)
    writing = asyncio.create_task(stream.run())
    try:
        await stream.acked_at_least(300, 60)
        # The leader of partition 0: a node whose partitions must move.
        victim = stream.producer.client.cluster.leader_for_partition(TopicPartition(topic, 0))
        victim_pid = next(n.pid for n in status.nodes if n.node_id == victim)
        assert victim_pid is not None
        kill(victim_pid)
        before = len(stream.acked)
        await stream.acked_at_least(before + 600, 60)  # produce keeps working on two nodes
    finally:
        stream.stopping.set()
        await writing
    assert stream.failed == []

    seen = await _read_all(bootstrap, topic, stream.acked, options)
    assert stream.acked <= seen, f"{len(stream.acked - seen)} acknowledged records lost"

    degraded = await asyncio.to_thread(_cli, cluster, "kafka", "status")
    assert degraded.returncode == 1
    assert f"kafka node {victim} stopped" in degraded.stdout
    assert "quorum leader: node " in degraded.stdout

    stopped = await asyncio.to_thread(_cli, cluster, "kafka", "stop")
    assert stopped.returncode == 0 and "kafka stopped" in stopped.stdout
    assert not any(pid_alive(pid) for pid in pids)
    home = str(cluster.settings.home)
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if any(home in arg for arg in (p.info["cmdline"] or []))]
    assert left == [], f"processes of the cluster still running: {left}"
