"""Natural batches (pipeline/batching.py): held while the source has more ready, handed over
in order, and never held for ever when the source stops yielding."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pipeline.batching import NaturalBatches
from runtime.waiting import wait_until_async


class Source:
    """What the stream has ready: ``ready`` items still queued behind the one just added."""

    def __init__(self) -> None:
        self.ready = 0

    def more_ready(self) -> bool:
        return self.ready > 0


def batches_of(source: Source, max_size: int = 4, hold_limit_s: float = 10.0,
               ) -> tuple[NaturalBatches[int], list[list[int]], list[BaseException]]:
    handled: list[list[int]] = []
    errors: list[BaseException] = []

    async def process(batch: list[int]) -> None:
        handled.append(batch)

    return (NaturalBatches(process, max_size, source.more_ready, errors.append, hold_limit_s),
            handled, errors)


async def test_items_are_held_while_more_are_ready_and_handed_over_when_none_is() -> None:
    source = Source()
    batches, handled, _ = batches_of(source)
    source.ready = 2
    await batches.add(1)
    source.ready = 1
    await batches.add(2)
    assert handled == [] and batches.held == 2
    source.ready = 0
    await batches.add(3)
    assert handled == [[1, 2, 3]] and batches.held == 0


async def test_at_low_rates_each_item_is_handed_over_at_once() -> None:
    source = Source()
    batches, handled, _ = batches_of(source)
    for item in range(3):
        await batches.add(item)
        assert handled[-1] == [item]          # no waiting for company


async def test_a_full_batch_is_handed_over_even_with_more_ready() -> None:
    source = Source()
    source.ready = 100
    batches, handled, _ = batches_of(source, max_size=3)
    for item in range(7):
        await batches.add(item)
    assert handled == [[0, 1, 2], [3, 4, 5]] and batches.held == 1


async def test_items_held_while_the_source_stops_yielding_are_handed_over_by_the_timer() -> None:
    source = Source()
    source.ready = 5                          # then a rebalance clears the queue: nothing comes
    batches, handled, errors = batches_of(source, hold_limit_s=0.01)
    await batches.add(1)
    await batches.add(2)
    assert handled == []
    await _until(lambda: bool(handled))
    assert handled == [[1, 2]] and errors == []


async def test_batches_are_handled_one_at_a_time_in_order() -> None:
    source = Source()
    handled: list[list[int]] = []
    first_may_finish = asyncio.Event()

    async def process(batch: list[int]) -> None:
        if not handled:
            handled.append(batch)
            await first_may_finish.wait()     # the first batch waits (for a slot, a gap read)
        else:
            handled.append(batch)

    batches: NaturalBatches[int] = NaturalBatches(process, 10, source.more_ready, print, 10.0)
    first = asyncio.create_task(batches.add(1))
    await _until(lambda: bool(handled))
    second = asyncio.create_task(batches.add(2))
    done, _ = await asyncio.wait({second}, timeout=0.05)
    assert not done and handled == [[1]]
    first_may_finish.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert handled == [[1], [2]]


async def test_an_error_in_the_timers_handover_is_reported() -> None:
    source = Source()
    source.ready = 1
    errors: list[BaseException] = []

    async def process(batch: list[int]) -> None:
        raise RuntimeError("gap unreadable")

    batches: NaturalBatches[int] = NaturalBatches(process, 10, source.more_ready, errors.append,
                                                  0.01)
    await batches.add(1)
    await _until(lambda: bool(errors))
    assert str(errors[0]) == "gap unreadable"


async def test_closing_drops_the_held_items_unhandled() -> None:
    source = Source()
    source.ready = 1
    batches, handled, _ = batches_of(source, hold_limit_s=0.01)
    await batches.add(1)
    batches.close()
    await asyncio.sleep(0.05)                 # past the hold limit: the timer was stopped
    assert handled == [] and batches.held == 0


def test_a_batch_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError):
        batches_of(Source(), max_size=0)


async def _until(condition: Callable[[], bool], what: str = "the condition") -> None:
    async def check() -> bool | None:
        return condition() or None

    await wait_until_async(check, 5, what)
