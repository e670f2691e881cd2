"""The worker group's lag on ``logins``: what it committed against what is there.

The workers' consumer group is Faust's app id, which is ``worker_id``
(Faust appends ``-v<version>`` only for an app version above 1, and the
worker uses the default 1; pipeline/worker.py ``create_app``). Per
partition, the lag is the high watermark minus the committed offset; a
partition with no commit yet counts from the log's start, where the
worker would begin (Faust's ``auto_offset_reset`` is ``earliest``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from runtime.kafka_security import Role, client_options
from runtime.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None     # None: the group never committed here
    end: int                  # the high watermark: the offset the next record gets
    lag: int


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "topic": self.topic, "total_lag": self.total,
                "partitions": [{"partition": p.partition, "committed": p.committed,
                                "end": p.end, "lag": p.lag} for p in self.partitions]}


def lag_by_partition(committed: Mapping[int, int | None], beginning: Mapping[int, int],
                     end: Mapping[int, int]) -> tuple[PartitionLag, ...]:
    """Each partition of ``end``: its lag from the commit, else from the log's start."""
    out = []
    for partition in sorted(end):
        done = committed.get(partition)
        start = done if done is not None and done >= 0 else beginning.get(partition, 0)
        out.append(PartitionLag(partition, done, end[partition], max(0, end[partition] - start)))
    return tuple(out)


async def group_lag(settings: Settings, timeout_s: float) -> GroupLag:
    """The lag of the workers' group on ``logins`` now.

    Every Kafka request is bounded by ``timeout_s``; the caller bounds the whole.

    Raises:
        aiokafka.errors.KafkaError: the cluster did not answer.
        LookupError: the cluster has no ``logins`` topic.
    """
    group, topic = settings.worker_id, settings.logins_topic
    timeout_ms = int(timeout_s * 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.OPS),
                                request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
        if described["error_code"] != 0 or not described["partitions"]:
            raise LookupError(f"the cluster has no topic {topic!r}")
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
    tps = sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.OPS), group_id=None,
                                enable_auto_commit=False, request_timeout_ms=timeout_ms)
    try:
        await consumer.start()
        beginning = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return GroupLag(group, topic, lag_by_partition(
        committed, {tp.partition: o for tp, o in beginning.items()},
        {tp.partition: o for tp, o in end.items()}))
