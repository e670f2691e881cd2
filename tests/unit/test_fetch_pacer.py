"""The fetch pacer answers sparse fetches on the first record and batches crowded ones
(runtime/fetch_tuning.py); a fake clock stands in for time."""

from __future__ import annotations

from runtime.fetch_tuning import FIRST_RECORD_BURST, FetchPacer, FetchTuning

TUNING = FetchTuning(wait_ms=5, min_bytes=64 * 1024, idle_wait_ms=500)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fetch(pacer: FetchPacer, clock: Clock, lasting_s: float, held: bool = False) -> tuple[int, int]:
    """Plan a fetch, let it take ``lasting_s``, report it back; the limits it asked for."""
    asked = pacer.limits(held)
    clock.now += lasting_s
    pacer.fetched()
    return asked


def test_sparse_fetches_are_all_answered_on_the_first_record() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    # 100 records a second, one fetch each: half the rate that would need batching.
    asked = [fetch(pacer, clock, 0.010) for _ in range(1_000)]
    assert set(asked) == {(500, 1)}


def test_a_short_burst_is_answered_on_the_first_record_too() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    asked = [fetch(pacer, clock, 0.0005) for _ in range(FIRST_RECORD_BURST)]
    assert set(asked) == {(500, 1)}
    assert fetch(pacer, clock, 0.0005) == (5, 64 * 1024)  # the bucket is empty: batch


def test_a_stream_is_batched_and_fetches_stay_near_one_per_wait() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    started = clock.now
    fetches = 0
    # Records are always there: a fetch answered on the first record comes back at once
    # (0.5 ms), a batch after its 5 ms wait, and the consumer works 1 ms between fetches.
    while clock.now - started < 10.0:
        _, min_bytes = pacer.limits(held=False)
        clock.now += 0.0005 if min_bytes == 1 else TUNING.wait_ms / 1000
        pacer.fetched()
        clock.now += 0.001
        fetches += 1
    elapsed_ms = (clock.now - started) * 1000
    assert fetches <= elapsed_ms / TUNING.wait_ms + FIRST_RECORD_BURST + 1, fetches
    assert fetches >= elapsed_ms / (TUNING.wait_ms + 1) * 0.9, fetches  # not throttled further


def test_a_fetch_built_while_records_are_held_batches_whatever_the_bucket() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    assert pacer.limits(held=True) == (5, 64 * 1024)
    assert pacer.limits(held=False) == (500, 1)


def test_after_a_stream_the_first_quiet_fetch_is_answered_on_the_first_record() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    for _ in range(100):
        fetch(pacer, clock, 0.0001)
    assert pacer.limits(False) == (5, 64 * 1024)
    clock.now += 0.006  # a 5 ms batch window later, one fetch is allowed again
    assert pacer.limits(False) == (500, 1)
