"""The fetch pacer answers sparse fetches on the first record and batches crowded ones
(runtime/fetch_tuning.py); a fake clock stands in for time."""

from __future__ import annotations

from runtime.fetch_tuning import FIRST_RECORD_BURST, FetchPacer, FetchTuning

TUNING = FetchTuning(wait_ms=5, min_bytes=64 * 1024, idle_wait_ms=500)
FIRST_RECORD, BATCH = (500, 1), (5, 64 * 1024)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fetch(pacer: FetchPacer, clock: Clock, lasting_s: float, got_records: bool = True,
          held: bool = False) -> tuple[int, int]:
    """Plan a fetch, let it take ``lasting_s``, report it back; the limits it asked for."""
    asked = pacer.limits(held)
    clock.now += lasting_s
    pacer.fetched(asked, got_records)
    return asked


def test_sparse_fetches_are_all_answered_on_the_first_record() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    # 100 records a second, one fetch each: half the rate that would need batching.
    asked = [fetch(pacer, clock, 0.010) for _ in range(1_000)]
    assert set(asked) == {FIRST_RECORD}


def test_a_short_burst_is_answered_on_the_first_record_too() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    asked = [fetch(pacer, clock, 0.0005) for _ in range(FIRST_RECORD_BURST)]
    assert set(asked) == {FIRST_RECORD}
    assert fetch(pacer, clock, 0.0005) == BATCH  # the bucket is empty: batch


def test_a_stream_is_batched_while_batches_bring_records() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    # Records are always there: a fetch answered on the first record comes back at once
    # (0.5 ms), a batch after its 5 ms wait; the consumer works 2 ms between fetches.
    asked = []
    while clock.now < 110.0:
        limits = pacer.limits(held=False)
        clock.now += 0.0005 if limits == FIRST_RECORD else TUNING.wait_ms / 1000
        pacer.fetched(limits, got_records=True)
        clock.now += 0.002
        asked.append(limits)
    switched = asked.index(BATCH)
    # The bucket (refilled by half a fetch while each came back and was worked on) ran
    # dry within a couple of bursts; from then on, one fetch per 7 ms and none more.
    assert FIRST_RECORD_BURST <= switched <= 2 * FIRST_RECORD_BURST, asked[:20]
    assert set(asked[switched:]) == {BATCH}


def test_an_empty_batch_ends_the_batching() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    for _ in range(FIRST_RECORD_BURST + 3):
        fetch(pacer, clock, 0.0001)
    assert pacer.batching
    assert fetch(pacer, clock, 0.005, got_records=False) == BATCH
    assert not pacer.batching
    assert pacer.limits(held=False) == FIRST_RECORD


def test_a_fetch_built_while_records_are_held_batches_without_switching() -> None:
    clock = Clock()
    pacer = FetchPacer(TUNING, clock)
    assert fetch(pacer, clock, 0.005, held=True) == BATCH
    assert not pacer.batching
    assert pacer.limits(held=False) == FIRST_RECORD
