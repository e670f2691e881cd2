"""Making the broker compact ``offers`` now, and counting what compaction left."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from runtime.acls import admin_client
from runtime.kafka_security import Role, client_options, kafka_access
from runtime.settings import Settings
from tests.offers_feed import OfferFeed

ROLL_KEY = b"roll"  # not a ticket id: edges and the worker skip it


def alter_offers(settings: Settings, configs: dict[str, str]) -> None:
    """Set topic configs of ``offers``, as the admin role."""
    admin = admin_client(kafka_access(settings, Role.ADMIN), settings.bootstrap_servers, 15.0)
    resource = ConfigResource(ResourceType.TOPIC, settings.offers_topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in configs.items()])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=15)


async def roll(settings: Settings) -> None:
    """One record that is no ticket on each partition: it starts a new segment once the
    last is older than segment.ms, so the cleaner may take the last one."""
    async with OfferFeed(settings) as feed:
        for partition in range(settings.partitions):
            await (await feed.producer.send(settings.offers_topic, b"x", key=ROLL_KEY,
                                            partition=partition))


def _one_each(counts: Counter[bytes]) -> bool:
    return all(n == 1 for n in counts.values())


async def compact_now(settings: Settings, done: Callable[[Counter[bytes]], bool] = _one_each,
                      timeout_s: float = 120.0) -> Counter[bytes]:
    """Have the broker compact ``offers``: segments of 100 ms, no lag, any dirt; roll
    every partition, and again each second, until ``done(records per ticket)`` (by
    default: no ticket has two records). Returns the last counts."""
    alter_offers(settings, {"segment.ms": "100", "min.compaction.lag.ms": "0",
                            "min.cleanable.dirty.ratio": "0.01"})
    async with asyncio.timeout(timeout_s):
        while True:
            await asyncio.sleep(0.2)  # past segment.ms: the next record rolls the segment
            await roll(settings)
            counts = await records_per_ticket(settings)
            if done(counts):
                return counts
            await asyncio.sleep(1.0)


async def records_per_ticket(settings: Settings) -> Counter[bytes]:
    """How many records each key of ``offers`` has, the roll records left out."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                **client_options(settings, Role.ADMIN))
    await consumer.start()
    try:
        tps = [TopicPartition(settings.offers_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        counts: Counter[bytes] = Counter()

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                counts.update(r.key for r in records if r.key is not None and r.key != ROLL_KEY)
        return counts
    finally:
        await consumer.stop()
