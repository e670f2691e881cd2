"""Produce and consume through the real broker with aiokafka."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import ensure_topics

pytestmark = pytest.mark.integration


async def test_produce_then_consume_round_trip(base_settings: Settings) -> None:
    await ensure_topics(base_settings)
    topic = base_settings.logins_topic
    producer = AIOKafkaProducer(
        bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN), acks="all", enable_idempotence=True
    )
    await producer.start()
    sent = {f"user-{i}".encode(): uuid.uuid4().bytes for i in range(20)}
    try:
        for key, value in sent.items():
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN),
        auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with _deadline(30):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        received[record.key] = record.value
    finally:
        await consumer.stop()
    assert received == sent


def _deadline(seconds: float):  # noqa: ANN202 - tiny helper
    import asyncio

    return asyncio.timeout(seconds)
