"""Moving the worker's per-user state to a new topic generation (``positioning migrate-state``).

The partitions of a ``logins`` topic in use cannot change: Faust keeps a
user's state in the changelog partition of that user's logins, and a
changed count makes the worker dead-letter every login
(runtime/topics.py refuses it). A new partition count is a new generation:
a new ``logins`` topic and a new worker id (so a new consumer group and a
new, empty changelog). This module fills the new changelog from the old
one: the latest state of every user, written to the partition the new
``logins`` topic routes that user to (the origin's producer hashes the key
with murmur2, aiokafka's default partitioner; Faust's table key is the user
id, JSON-encoded). The procedure around it is in docs/operations.md.

A user's state remembers the ``logins`` partition and offsets it counted
(engine/state.py: ``partition``, ``last_offset``, ``offsets``) to tell a
replay from a new login. Those positions mean nothing in the new topic, so
the migrated state keeps every count and remembered ticket and starts the
positions afresh in the new partition: the first login there is new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import changelog_topic, ensure_topics


class MigrationRefused(RuntimeError):
    """Migrating now could lose or double state; the message says why and what to do."""


@dataclass(frozen=True)
class MigrationReport:
    """What ``migrate_state`` did."""

    source_changelog: str
    target_changelog: str
    records_read: int
    users_copied: int
    deleted_skipped: int
    partitions: int


def user_partition(user_id: str, partitions: int) -> int:
    """The partition of ``logins`` the origin's producer sends this user's logins to."""
    return int(DefaultPartitioner()(user_id.encode(), list(range(partitions)), []))


def relocated_state(state: dict[str, Any], partition: int) -> dict[str, Any]:
    """``state`` for a user whose logins now arrive in ``partition`` of a new topic.

    Counts, recent views and remembered tickets (so a client retry is still
    known) stay; the offsets of the old topic are forgotten.
    """
    return {**state, "partition": partition, "last_offset": -1, "offsets": []}


async def migrate_state(source: Settings, target: Settings,
                        timeout_s: float = 30.0) -> MigrationReport:
    """Copy the latest state of every user from ``source``'s changelog into ``target``'s.

    ``source`` names the old generation (``logins_topic``, ``worker_id``),
    ``target`` the new one; both on the same cluster. Creates the new
    generation's topics first (``ensure_topics``).

    Raises:
        MigrationRefused: the generations are not distinct; the old worker's
            group still has members or has not committed every old login;
            the new changelog already holds state.
        TopicMismatch: from ``ensure_topics`` on the new generation.
        aiokafka.errors.KafkaError: the cluster did not answer.
    """
    if source.logins_topic == target.logins_topic or source.worker_id == target.worker_id:
        raise MigrationRefused(
            "a new generation needs both a new logins topic and a new worker id "
            f"(from {source.logins_topic!r}/{source.worker_id!r} to "
            f"{target.logins_topic!r}/{target.worker_id!r})")
    topics = await ensure_topics(target, timeout_s)
    partitions = topics.topics[0].partitions
    old, new = changelog_topic(source.worker_id), changelog_topic(target.worker_id)
    admin = AIOKafkaAdminClient(bootstrap_servers=source.bootstrap_servers,
        **client_options(source, Role.ADMIN),
                                request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        old_logins = await _partitions(admin, source.logins_topic, "--from-logins-topic")
        old_changelog = await _partitions(admin, old, "--from-worker-id")
        new_changelog = await _partitions(admin, new, "")
        await _check_stopped(admin, source.worker_id)
        committed = await admin.list_consumer_group_offsets(source.worker_id)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=source.bootstrap_servers,
        **client_options(source, Role.ADMIN),
                                enable_auto_commit=False, group_id=None,
                                request_timeout_ms=int(timeout_s * 1000))
    await consumer.start()
    try:
        # Always assigned: aiokafka's consumer without a group fails to stop without one.
        consumer.assign(old_logins + new_changelog)
        await _check_drained(consumer, source, old_logins, committed)
        await _check_empty(consumer, new, new_changelog)
        latest, records = await _read_latest(consumer, old, old_changelog, timeout_s)
    finally:
        await consumer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap_servers,
        **client_options(target, Role.ADMIN), acks="all",
                                enable_idempotence=True)
    await producer.start()
    copied = deleted = 0
    try:
        deliveries = []
        for key, value in latest.items():
            if value is None:
                deleted += 1
                continue
            user_id = orjson.loads(key)
            if not isinstance(user_id, str):
                raise MigrationRefused(f"{old} holds a key that is not a user id: {key!r}")
            partition = user_partition(user_id, partitions)
            state = relocated_state(orjson.loads(value), partition)
            deliveries.append(await producer.send(new, orjson.dumps(state), key=key,
                                                  partition=partition))
            copied += 1
        for delivery in deliveries:
            await delivery
    finally:
        await producer.stop()
    return MigrationReport(old, new, records, copied, deleted, partitions)


async def _partitions(admin: AIOKafkaAdminClient, topic: str,
                      option: str) -> list[TopicPartition]:
    """The partitions of ``topic``; refused if it does not exist (``option`` names it)."""
    (described,) = await admin.describe_topics([topic])
    if described["error_code"] != 0 or not described["partitions"]:
        hint = f": check {option}" if option else ""
        raise MigrationRefused(f"topic {topic!r} does not exist{hint}")
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


async def _check_stopped(admin: AIOKafkaAdminClient, group_id: str) -> None:
    """Refuse while the old worker group has members: they would write state after the copy."""
    (described,) = await admin.describe_consumer_groups([group_id])
    for group in described.groups:
        state, members = group[2], group[5]
        if members:
            raise MigrationRefused(
                f"the old worker group {group_id!r} still has {len(members)} member(s) "
                f"({state}): stop the old workers first, or they write to the old changelog "
                "after it was copied")


async def _check_drained(consumer: AIOKafkaConsumer, source: Settings,
                         tps: list[TopicPartition],
                         committed: dict[TopicPartition, Any]) -> None:
    """Refuse unless the old worker group committed every login of the old topic."""
    ends = await consumer.end_offsets(tps)
    begins = await consumer.beginning_offsets(tps)
    behind = {}
    for tp in tps:
        done = committed[tp].offset if tp in committed else begins[tp]
        if done < ends[tp]:
            behind[tp.partition] = ends[tp] - done
    if behind:
        raise MigrationRefused(
            f"the old worker group {source.worker_id!r} has not processed "
            f"{sum(behind.values())} login(s) of {source.logins_topic!r} (partition: count "
            f"{behind}): start the old worker again until it has none left (the origins "
            "already writing to the new topic), stop it, then migrate")


async def _check_empty(consumer: AIOKafkaConsumer, topic: str,
                       tps: list[TopicPartition]) -> None:
    """Refuse if the new changelog holds anything (a migration ran, or a new worker did)."""
    records = sum((await consumer.end_offsets(tps)).values())
    if records:
        raise MigrationRefused(
            f"the new changelog {topic!r} already holds {records} record(s): the migration "
            "ran already, or a worker of the new generation started first; delete the new "
            "generation's topics and consumer group to start over")


async def _read_latest(consumer: AIOKafkaConsumer, topic: str, tps: list[TopicPartition],
                       timeout_s: float) -> tuple[dict[bytes, bytes | None], int]:
    """The latest value of every key of ``topic`` (None: deleted) up to its current end.

    Raises:
        TimeoutError: no record came for ``timeout_s`` while some were still to read.
    """
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    latest: dict[bytes, bytes | None] = {}
    records = 0
    while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
        batches = await consumer.getmany(timeout_ms=int(timeout_s * 1000))
        if not batches:
            raise TimeoutError(f"no record of {topic!r} for {timeout_s} s before its end")
        for batch in batches.values():
            for record in batch:
                if record.offset < ends[TopicPartition(record.topic, record.partition)]:
                    latest[record.key] = record.value
                    records += 1
    return latest, records
