"""A consumer's fetches are answered on the first record while sparse, and batched while
records crowd or some are held (runtime/fetch_tuning.py)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.worker import create_app
from runtime.compat import MissingInternal
from runtime.compat.aiokafka import FetchStep, asked_limits, fetch_limits, wrap_fetch_step
from runtime.fetch_tuning import FIRST_RECORD_BURST, FetchTuning, adapt_to_traffic
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import ensure_topics

pytestmark = pytest.mark.integration

TUNING = FetchTuning(wait_ms=5, min_bytes=64 * 1024, idle_wait_ms=3_000)


async def test_quiet_topic_is_long_polled_and_a_record_still_arrives_at_once(
        base_settings: Settings) -> None:
    await ensure_topics(base_settings)
    topic = base_settings.offers_topic
    consumer = AIOKafkaConsumer(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=TUNING.wait_ms,
                                fetch_min_bytes=TUNING.min_bytes)
    producer = AIOKafkaProducer(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN))
    await consumer.start()
    await producer.start()
    try:
        adapt_to_traffic(consumer, TUNING)
        fetches: list[tuple[int, int, bool]] = []  # (wait asked, minimum asked, got records)

        def record(step: FetchStep) -> None:
            fetches.append((*asked_limits(step.request), step.got_records))
        wrap_fetch_step(consumer, record)
        consumer.assign([TopicPartition(topic, p) for p in range(base_settings.partitions)])

        # Quiet for 1.5 s: a 5 ms fetch would go out ~300 times; the first fetch already
        # waits for a record (3 s), so none or one came back.
        assert await consumer.getmany(timeout_ms=1_500) == {}
        assert len(fetches) <= 1, fetches
        assert fetch_limits(consumer) == (TUNING.idle_wait_ms, 1)

        # A record lands during the long poll: the broker answers at once, not after 3 s.
        sent_at = time.monotonic()
        await producer.send_and_wait(topic, b"offer", key=b"ticket", partition=0)
        got = await consumer.getmany(timeout_ms=5_000)
        arrived_after = time.monotonic() - sent_at
        assert [r.value for records in got.values() for r in records] == [b"offer"]
        assert arrived_after < 1.0, arrived_after
        carrier = next(f for f in fetches if f[2])
        assert carrier[:2] == (TUNING.idle_wait_ms, 1)

        # The fetch after it is answered on the first record again: no 5 ms fetch in between.
        async def next_fetch() -> None:
            while fetches[-1][2]:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(next_fetch(), timeout=10)
        after = fetches[fetches.index(carrier) + 1]
        assert after[:2] == (TUNING.idle_wait_ms, 1)
    finally:
        await producer.stop()
        await consumer.stop()


def _tuned_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), group_id=None,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            fetch_max_wait_ms=TUNING.wait_ms, fetch_min_bytes=TUNING.min_bytes)


async def test_a_trickle_costs_one_fetch_per_record_each_answered_on_arrival(
        base_settings: Settings) -> None:
    """Records 50 ms apart: each is delivered by a fetch that was waiting for it, with no
    empty fetch in between (the old tuning sent a 5 ms fetch after each record)."""
    await ensure_topics(base_settings)
    topic = base_settings.offers_topic
    consumer = _tuned_consumer(base_settings)
    producer = AIOKafkaProducer(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN))
    await consumer.start()
    await producer.start()
    try:
        adapt_to_traffic(consumer, TUNING)
        fetches: list[tuple[int, int, bool]] = []  # (wait asked, minimum asked, got records)
        wrap_fetch_step(consumer, lambda step: fetches.append(
            (*asked_limits(step.request), step.got_records)))
        consumer.assign([TopicPartition(topic, p) for p in range(base_settings.partitions)])
        assert await consumer.getmany(timeout_ms=500) == {}
        fetches.clear()

        received: list[bytes] = []
        delays: list[float] = []
        for i in range(20):
            sent_at = time.monotonic()
            await producer.send_and_wait(topic, b"offer-%d" % i, key=b"t", partition=i % 3)
            got = await consumer.getmany(timeout_ms=5_000)
            delays.append(time.monotonic() - sent_at)
            received += [r.value for records in got.values() for r in records]
            await asyncio.sleep(0.05)  # the trickle's pace, not a synchronisation
        assert received == [b"offer-%d" % i for i in range(20)]
        assert max(delays) < 1.0, delays  # none waited for a 3 s long poll to expire
        # One fetch per record and at most a couple more (one may be on its way at the end).
        assert len(fetches) <= 20 + 2, fetches
        assert {(wait, least) for wait, least, _ in fetches} == {TUNING.first_record}, fetches
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_stream_is_batched_at_about_one_fetch_per_wait(base_settings: Settings) -> None:
    """Records landing far more often than every 5 ms: the consumer switches to batches, and
    its fetches stay near one per 5 ms instead of one per record."""
    await ensure_topics(base_settings)
    topic = base_settings.offers_topic
    consumer = _tuned_consumer(base_settings)
    producer = AIOKafkaProducer(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN), linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        adapt_to_traffic(consumer, TUNING)
        fetches: list[tuple[int, int, bool]] = []
        wrap_fetch_step(consumer, lambda step: fetches.append(
            (*asked_limits(step.request), step.got_records)))
        consumer.assign([TopicPartition(topic, p) for p in range(base_settings.partitions)])
        assert await consumer.getmany(timeout_ms=500) == {}
        fetches.clear()

        sent = 0
        stop = asyncio.Event()

        async def send_until_stopped(lane: int) -> None:
            nonlocal sent
            while not stop.is_set():
                await producer.send_and_wait(topic, b"x" * 100, key=b"k%d" % lane,
                                             partition=lane % base_settings.partitions)
                sent += 1

        senders = [asyncio.create_task(send_until_stopped(lane)) for lane in range(4)]
        started = time.monotonic()
        received = 0
        while time.monotonic() - started < 2.0:
            got = await consumer.getmany(timeout_ms=100)
            received += sum(len(records) for records in got.values())
        elapsed_ms = (time.monotonic() - started) * 1000
        counted = len(fetches)
        stop.set()
        await asyncio.gather(*senders)
        assert sent > 2 * elapsed_ms / TUNING.wait_ms, sent  # records did crowd
        assert received > 0
        assert any((wait, least) == TUNING.batch for wait, least, _ in fetches[:counted]), fetches
        assert counted <= 1.2 * elapsed_ms / TUNING.wait_ms + FIRST_RECORD_BURST + 2, counted
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_consumer_still_holding_records_never_parks_a_long_poll(
        base_settings: Settings) -> None:
    """A long poll on the quiet partitions would hold back the fetch of a partition just drained."""
    await ensure_topics(base_settings)
    topic = base_settings.offers_topic
    producer = AIOKafkaProducer(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN))
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, b"offer-%d" % i, key=b"t%d" % i, partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=TUNING.wait_ms,
                                fetch_min_bytes=TUNING.min_bytes)
    await consumer.start()
    try:
        adapt_to_traffic(consumer, TUNING)
        fetches: list[tuple[int, bool]] = []  # (wait asked, records buffered when asked)

        def record(step: FetchStep) -> None:  # only partition 0 has records to buffer
            fetches.append((asked_limits(step.request)[0], step.held_before))
        wrap_fetch_step(consumer, record)
        consumer.assign([TopicPartition(topic, p) for p in range(base_settings.partitions)])

        # Partition 0's records are fetched but not taken: the consumer is busy with them.
        # Its fetches of the quiet partitions must stay short (a 3 s long poll would let
        # a few through in the 3 s allowed here, not 20).
        async def busy_fetches(count: int) -> None:
            while sum(1 for _, buffered in fetches if buffered) < count:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(busy_fetches(20), timeout=3)
        asked = [wait for wait, buffered in fetches if buffered]
        assert set(asked[1:]) == {TUNING.wait_ms}, asked  # the first may predate the records

        # Once everything is handed over and the topic stays quiet, it long-polls.
        got = await consumer.getmany(timeout_ms=5_000)
        assert sorted(r.value for records in got.values() for r in records) == [
            b"offer-%d" % i for i in range(5)]

        async def idle() -> None:
            while fetch_limits(consumer)[0] != TUNING.idle_wait_ms:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(idle(), timeout=5)
    finally:
        await consumer.stop()


@pytest.mark.parametrize("untaken_counts", [False, True])
async def test_records_the_application_never_takes_do_not_keep_a_quiet_consumer_batching(
        base_settings: Settings, untaken_counts: bool) -> None:
    """Faust leaves its changelog partitions' records held in aiokafka, never taken. Told
    which partitions it takes, a quiet consumer waits for records; counting the untaken
    ones (the control), it sends a 5 ms fetch after another."""
    await ensure_topics(base_settings)
    taken_topic, untaken_topic = base_settings.offers_topic, base_settings.dlq_topic
    producer = AIOKafkaProducer(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN))
    await producer.start()
    try:
        await producer.send_and_wait(untaken_topic, b"state", key=b"user", partition=0)
    finally:
        await producer.stop()
    consumer = _tuned_consumer(base_settings)
    await consumer.start()
    try:
        adapt_to_traffic(consumer, TUNING, taken=(lambda _tp: True) if untaken_counts
                         else lambda tp: tp.topic != untaken_topic)
        steps: list[FetchStep] = []
        wrap_fetch_step(consumer, steps.append)
        taken = [TopicPartition(taken_topic, p) for p in range(base_settings.partitions)]
        consumer.assign([*taken, TopicPartition(untaken_topic, 0)])

        async def untaken_record_held() -> None:
            while not any(step.got_records for step in steps):
                await asyncio.sleep(0.01)
        await asyncio.wait_for(untaken_record_held(), timeout=10)
        before = len(steps)
        assert await consumer.getmany(*taken, timeout_ms=1_500) == {}
        assert steps[-1].held_after  # the record is still held: the application never took it
        quiet_fetches = len(steps) - before
        if untaken_counts:
            assert quiet_fetches >= 20, quiet_fetches
        else:  # the first may have been built before the record came
            assert quiet_fetches <= 2, quiet_fetches
    finally:
        await consumer.stop()


def test_no_long_poll_when_it_is_turned_off() -> None:
    """Turned off, the consumer is left alone (nothing of aiokafka's is touched)."""
    adapt_to_traffic(object(), FetchTuning(idle_wait_ms=0))
    with pytest.raises(MissingInternal):  # turned on, a consumer without a Fetcher is refused
        adapt_to_traffic(object(), FetchTuning(idle_wait_ms=100))


async def test_the_worker_consumer_asks_the_broker_for_the_settings_fetch_tuning(
        base_settings: Settings) -> None:
    """Faust hard-codes 1500 ms and one byte; the worker's transport replaces them, and the
    requests on the wire carry the settings' values (the long poll is off here)."""
    await ensure_topics(base_settings)
    settings = base_settings.replace(fetch_wait_ms=300, fetch_min_bytes=32 * 1024,
                                   fetch_idle_wait_ms=0)
    app = create_app(settings)
    consumer = app.consumer.consumer_thread.create_worker_consumer()
    await consumer.start()
    try:
        fetches: list[tuple[float, tuple[int, int]]] = []  # (answered at, limits asked)
        wrap_fetch_step(consumer, lambda step: fetches.append((time.monotonic(),
                                                               asked_limits(step.request))))
        consumer.assign([TopicPartition(settings.logins_topic, p)
                         for p in range(settings.partitions)])
        assert await consumer.getmany(timeout_ms=2_000) == {}
        assert len(fetches) >= 3, fetches
        assert {asked for _, asked in fetches} == {(300, 32 * 1024)}, fetches
        # A quiet topic: the broker held each fetch for its 300 ms wait (not 5 ms, not 1.5 s).
        gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(fetches)]
        assert all(0.2 <= gap <= 0.6 for gap in gaps), gaps
    finally:
        await consumer.stop()
