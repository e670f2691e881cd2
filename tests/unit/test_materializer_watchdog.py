"""The materializer reconnects only when records wait and nothing moves, and fetches as configured."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from edge.materializer import Materializer, NotRunning
from edge.metrics import EdgeMetrics
from edge.render import Renderer
from edge.store import OfferStore
from edge.waiters import Waiters
from runtime.fetch_tuning import FetchTuning
from runtime.kafka_security import KafkaAccess, Role

PLAINTEXT_EDGE = KafkaAccess(Role.EDGE, secured=False)  # no broker is reached here



class EndOffsets:
    """Stands in for the consumer's end_offsets call (the only one the watchdog makes)."""

    def __init__(self) -> None:
        self.ends: dict[int, int] | Exception = {}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if isinstance(self.ends, Exception):
            raise self.ends
        return {tp: self.ends[tp.partition] for tp in tps}


def materializer(tmp_path: Path) -> tuple[Materializer, EndOffsets, list[str]]:
    m = Materializer("unused:9092", "offers", OfferStore(tmp_path), Waiters(10), EdgeMetrics("t"),
                     access=PLAINTEXT_EDGE, keyring=None, renderer=Renderer(None))
    consumer = EndOffsets()
    m._consumer = consumer  # type: ignore[assignment]
    m.progress.targets = {0: 10}
    m.progress.next_offsets = {0: 5}
    calls: list[str] = []

    async def reconnect() -> None:
        calls.append("reconnect")
    m._reconnect = reconnect  # type: ignore[method-assign]
    return m, consumer, calls


async def test_waiting_records_and_no_progress_reconnect(tmp_path: Path) -> None:
    m, consumer, calls = materializer(tmp_path)
    consumer.ends = {0: 10}
    for _ in range(3):
        await m._watch_for_stall()
    assert calls == ["reconnect"]


async def test_progress_or_nothing_waiting_does_not_reconnect(tmp_path: Path) -> None:
    m, consumer, calls = materializer(tmp_path)
    consumer.ends = {0: 10}
    for offset in (6, 7, 8):
        m.progress.next_offsets = {0: offset}
        await m._watch_for_stall()
    consumer.ends = {0: 8}
    for _ in range(3):
        await m._watch_for_stall()
    assert calls == []


async def test_an_unreachable_broker_is_not_a_stall(tmp_path: Path) -> None:
    m, consumer, calls = materializer(tmp_path)
    consumer.ends = ConnectionError("broker away")
    for _ in range(4):
        await m._watch_for_stall()
    assert calls == []


def test_the_consumer_fetches_with_the_configured_wait_and_minimum(tmp_path: Path) -> None:
    m = Materializer("unused:9092", "offers", OfferStore(tmp_path), Waiters(10), EdgeMetrics("t"),
                     access=PLAINTEXT_EDGE, keyring=None, renderer=Renderer(None),
                     fetch=FetchTuning(wait_ms=9, min_bytes=12345, idle_wait_ms=300))

    async def build() -> tuple[int, int]:
        consumer = m._new_consumer()
        return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes

    assert asyncio.run(build()) == (9, 12345)


async def test_a_call_before_run_made_the_clients_is_one_clear_error(tmp_path: Path) -> None:
    m = Materializer("unused:9092", "offers", OfferStore(tmp_path), Waiters(10), EdgeMetrics("t"),
                     access=PLAINTEXT_EDGE, keyring=None, renderer=Renderer(None))
    with pytest.raises(NotRunning, match="admin client exists only inside run"):
        await m._partitions()
    with pytest.raises(NotRunning, match="consumer exists only inside run"):
        await m._assign({0})


async def test_the_render_pass_starts_when_the_node_catches_up(tmp_path: Path) -> None:
    # It waits on the catch-up, not on a poll: it starts in the same loop turn.
    m, _, _ = materializer(tmp_path)
    render = asyncio.create_task(m._render_backlog())
    await asyncio.sleep(0)
    assert not render.done()
    m.progress.next_offsets = {0: 10}
    m._check_ready()
    await asyncio.wait_for(render, timeout=1)
    assert m.progress.rendered
