"""Topology changes refused loudly, the state migration that makes one, and the worker's
dead-letter circuit breaker, against a real broker and real worker processes; the refusal
also on the session's 3-node cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from runtime.clock import now_us
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import Durability, ensure_topics
from schemas.codec import AvroCodec, load_schema, login_codec
from tests.conftest import unique_settings
from tests.helpers import OfferReader, start_worker, wait_until, wait_until_async

pytestmark = pytest.mark.integration

CODEC = login_codec()


def login(user: str, ticket: str) -> dict[str, object]:
    at = now_us()
    return {"ticket_id": ticket, "user_id": user, "ip": "81.2.69.160", "user_agent": None,
            "login_accepted_at": at, "expires_at": at + 900_000_000}


async def produce(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """Each (user id, value) onto logins, keyed by user id as the origin does."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), acks="all")
    await producer.start()
    try:
        for user, value in records:
            await producer.send_and_wait(settings.logins_topic, value, key=user.encode())
    finally:
        await producer.stop()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **settings.to_env()})


async def records_in(settings: Settings, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def visits_after(settings: Settings, tickets: dict[str, str]) -> dict[str, int]:
    """ticket -> user of each login; user -> visit of their latest of these logins."""
    async with OfferReader(settings) as reader:
        offers = await reader.wait_for(list(tickets), timeout=90)
    latest: dict[str, int] = {}
    for offer in offers.values():
        latest[offer["user_id"]] = max(latest.get(offer["user_id"], 0), offer["visit"])
    return latest


async def raise_logins_partitions(settings: Settings, total: int) -> None:
    """The incident: someone gives ``logins`` more partitions in place; returns once the
    cluster's metadata shows them (on a cluster the other nodes learn it a moment later)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        await admin.create_partitions({settings.logins_topic: NewPartitions(total_count=total)})
    finally:
        await admin.close()
    # Until every node has the new metadata, the node asked may still say 3.
    await asyncio.to_thread(wait_until, lambda: cli(settings, "topics").returncode == 1, 30,
                            "`positioning topics` to see the new partition count")


def assert_partition_change_refused(result: subprocess.CompletedProcess[str],
                                    settings: Settings, command: str) -> None:
    """``command`` exited 1 naming logins' 4 partitions, the changelog's 3 and the fix."""
    assert result.returncode == 1, (command, result.stdout, result.stderr)
    assert (f"topic {settings.logins_topic!r} has 4 partitions but the worker's state "
            f"changelog '{settings.worker_id}-user-state-changelog' has 3") in result.stderr
    assert "positioning migrate-state" in result.stderr and "docs/operations.md" in result.stderr


async def test_a_new_partition_count_is_refused_then_migrated_with_visits_exact(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    old = unique_settings(kafka_bootstrap, tmp_path, partitions=3)
    await ensure_topics(old)
    users = [f"user-{i}" for i in range(12)]
    tickets = {f"{u}-t{n}": u for i, u in enumerate(users) for n in range(i % 3 + 1)}
    worker = start_worker(old, tmp_path / "logs", name="worker-old")
    try:
        await produce(old, [(u, CODEC.encode(login(u, t))) for t, u in tickets.items()])
        before = await visits_after(old, tickets)
    finally:
        worker.stop()
    assert before == {u: i % 3 + 1 for i, u in enumerate(users)}

    # The incident: someone raises logins from 3 to 4 partitions.
    await raise_logins_partitions(old, 4)
    for command in ("topics", "worker"):
        assert_partition_change_refused(cli(old, command), old, command)

    # The procedure: a new generation, the state migrated, the new worker started.
    # Its workers need state directories of their own: Faust's RocksDB files do not
    # name the worker id, and offsets of the old changelog would not fit the new one.
    new = old.replace(logins_topic=f"{old.logins_topic}.v2", worker_id=f"{old.worker_id}.v2",
                      partitions=4, worker_data_dir=tmp_path / "worker-v2")
    migrate = ["migrate-state", "--from-logins-topic", old.logins_topic,
               "--from-worker-id", old.worker_id]
    result = cli(new, *migrate)
    assert result.returncode == 0, result.stderr
    assert f"{len(users)} users' state copied" in result.stdout
    again = cli(new, *migrate)
    assert again.returncode == 1 and "already holds" in again.stderr
    worker = start_worker(new, tmp_path / "logs", name="worker-new")
    try:
        next_tickets = {f"{u}-next": u for u in users}
        await produce(new, [(u, CODEC.encode(login(u, t))) for t, u in next_tickets.items()])
        after = await visits_after(new, next_tickets)
    finally:
        worker.stop()
    assert after == {u: before[u] + 1 for u in users}


@pytest.mark.cluster
async def test_on_three_nodes_a_new_partition_count_is_refused(
        three_node_cluster: str, tmp_path: Path) -> None:
    settings = unique_settings(three_node_cluster, tmp_path, partitions=3)
    report = await ensure_topics(settings)
    # Three brokers: three copies of every record, two of them to acknowledge a write.
    assert report.durability == Durability(replication_factor=3, min_insync_replicas=2)
    assert {(t.replication_factor, t.min_insync_replicas) for t in report.topics} == {(3, 2)}
    assert len(report.topics) == 4  # logins, offers, logins.dlq and the state changelog
    await raise_logins_partitions(settings, 4)
    commands = ("topics", "worker")
    results = await asyncio.gather(*(asyncio.to_thread(cli, settings, c) for c in commands))
    for command, result in zip(commands, results, strict=True):
        assert_partition_change_refused(result, settings, command)


async def test_the_breaker_stops_a_systematic_fault_and_loses_nothing(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """Logins from a writer schema the worker does not know (an origin upgraded first)."""
    settings = unique_settings(kafka_bootstrap, tmp_path)
    await ensure_topics(settings)
    newer = load_schema("login_event")
    newer = {**newer, "fields": [*newer["fields"],
                                 {"name": "device", "type": "string", "default": ""}]}
    unknown = AvroCodec(newer)
    user = "mallory"                          # one key: one partition, a fixed order
    poison = [(user, unknown.encode({**login(user, f"p{i}"), "device": "x"}))
              for i in range(120)]
    good = {f"g{i}": user for i in range(10)}
    await produce(settings, poison + [(user, CODEC.encode(login(user, t))) for t in good])
    # Not waited for ready: a worker that works per batch can trip on the logins already on
    # the topic before its readiness page has ever answered 200.
    worker = start_worker(settings, tmp_path / "logs", wait_ready=False)
    assert worker.ready_url is not None
    try:
        def tripped() -> bool:
            try:
                response = httpx.get(worker.ready_url or "", timeout=2)
            except httpx.TransportError:    # its web server is not up yet
                return False
            return response.status_code == 503 and "circuit breaker" in response.text
        wait_until(tripped, 90, "the breaker to trip")
        body = httpx.get(worker.ready_url, timeout=2).json()
        assert body["reason"].startswith("circuit breaker open: 100 logins in a row "
                                         "dead-lettered with UnknownSchema at stage decode")
        status = httpx.get(worker.ready_url.replace("/ready/", "/status/"), timeout=2)
        assert status.status_code == 503 and status.json()["breaker"] == body["reason"]
        assert "CRITICAL" in worker.log_text() and "restart the worker" in worker.log_text()

        async def committed_up_to_the_trip() -> bool:
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(settings.worker_id)
            finally:
                await admin.close()
            return sum(o.offset for tp, o in offsets.items()
                       if tp.topic == settings.logins_topic) == 100
        await wait_until_async(committed_up_to_the_trip, 30, "the dead letters' commit")
        assert await records_in(settings, settings.dlq_topic) == 100
    finally:
        worker.stop()
    # Restarted, it resumes right after the trip: the rest of the poison is
    # dead-lettered (fewer than the threshold), the good logins become offers.
    worker = start_worker(settings, tmp_path / "logs", name="worker-restarted")
    try:
        assert await visits_after(settings, good) == {user: 10}
        assert await records_in(settings, settings.dlq_topic) == 120
    finally:
        worker.stop()
