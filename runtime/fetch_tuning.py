"""How the worker and the edges fetch: answered on the first record, batched only when records crowd.

A fetch request tells the broker how long it may hold the request
(``max_wait``) and how many bytes it should wait for (``min_bytes``).

First record (the normal case): one byte, ``idle_wait_ms``. The broker
answers the moment a record lands, so no record waits for a fetch window,
and a quiet topic costs one request per ``idle_wait_ms``. The consumer then
sends about one fetch per record batch the producers write, and none in
between (no empty fetch after each record).

Batch: ``min_bytes`` or ``wait_ms`` (64 KiB, 5 ms). Answering on the first
record would, at a thousand records a second, send a fetch for every record
or two. So a consumer answers on the first record at most once per
``wait_ms`` on average (a bucket of ``FIRST_RECORD_BURST`` fetches, refilled
one per ``wait_ms``); when the bucket runs dry it asks for batches, and keeps
batching until a batch comes back empty, so a stream costs one fetch per
``wait_ms`` and the time to process its records.

Held records: aiokafka keeps one fetch in flight per broker, built for the
partitions whose records are all handed over. A consumer still working
through records of some partitions (the worker when it is behind) would park
a long poll on the others (for the worker, on Faust's quiet assignor
partition too), and a partition it then drains would wait behind that fetch
for up to ``idle_wait_ms``. So a fetch built while the Fetcher holds records
the application will take always batches. Records it will not take do not
count: Faust "pauses" a table's changelog partitions after recovery only in
its own bookkeeping, so aiokafka fetches them once more and holds those
records until the next rebalance (counted, they kept the idle worker at
about 190 empty 5 ms fetches a second).

aiokafka offers neither a way to change the wait and minimum of a running
consumer nor hooks around a fetch; both go through
runtime/compat/aiokafka.py, which fails loudly if an upgrade removed the
internals they need (docs/decisions/0007-fetch-tuning.md,
docs/decisions/0014-answer-on-the-first-record.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from runtime.compat.aiokafka import (
    asked_limits,
    set_fetch_limits,
    wrap_fetch_planning,
    wrap_fetch_step,
)
from runtime.settings import Settings

# Fetches answered on the first record that may follow each other faster than one per
# ``wait_ms``: two or three records landing a few ms apart at a low rate are each
# delivered at once, a sustained stream is batched after this many.
FIRST_RECORD_BURST = 4


class FetchTuning(NamedTuple):
    """A consumer's fetch settings: ``wait_ms`` and ``min_bytes`` for a batch (the
    broker answers when ``min_bytes`` bytes are ready or ``wait_ms`` ms passed, and
    the consumer batches above one fetch per ``wait_ms``), ``idle_wait_ms`` (ms) the
    longest a fetch answered on the first record waits, 0 to always batch."""

    wait_ms: int = 5
    min_bytes: int = 1
    idle_wait_ms: int = 0

    def query(self) -> str:
        """As a URL query (the worker's Faust transport reads it from the broker URL)."""
        return (f"fetch_wait_ms={self.wait_ms}&fetch_min_bytes={self.min_bytes}"
                f"&fetch_idle_wait_ms={self.idle_wait_ms}")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FetchTuning:
        default = cls()
        return cls(int(query.get("fetch_wait_ms", default.wait_ms)),
                   int(query.get("fetch_min_bytes", default.min_bytes)),
                   int(query.get("fetch_idle_wait_ms", default.idle_wait_ms)))

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchTuning:
        return cls(settings.fetch_wait_ms, settings.fetch_min_bytes, settings.fetch_idle_wait_ms)

    @property
    def first_record(self) -> tuple[int, int]:
        """``(wait_ms, min_bytes)`` of a fetch the broker answers on the first record."""
        return self.idle_wait_ms, 1

    @property
    def batch(self) -> tuple[int, int]:
        """``(wait_ms, min_bytes)`` of a batched fetch."""
        return self.wait_ms, self.min_bytes


class FetchPacer:
    """Chooses each fetch's limits: on the first record while fetches are sparse, else batched.

    Fetches answered on the first record take one from a bucket of
    ``FIRST_RECORD_BURST``, refilled one per ``tuning.wait_ms``. When the
    next one finds the bucket empty, the consumer batches, and goes on
    batching until a batch comes back empty (a whole ``wait_ms`` without a
    record: the stream thinned out). A fetch built while records are held
    batches too, without switching. Pure: the clock (seconds, monotonic) is
    a parameter.
    """

    def __init__(self, tuning: FetchTuning, clock: Callable[[], float] = time.monotonic) -> None:
        self.tuning = tuning
        self.batching = False
        self._clock = clock
        self._refill_per_s = 1000.0 / tuning.wait_ms
        self._bucket = float(FIRST_RECORD_BURST)
        self._refilled_at = clock()

    def limits(self, held: bool) -> tuple[int, int]:
        """``(wait_ms, min_bytes)`` for the next fetch; ``held``: the Fetcher holds records
        the application will take, of partitions that fetch leaves out."""
        if held or self.batching:
            return self.tuning.batch
        self._refill()
        if self._bucket < 1.0:
            self.batching = True
            return self.tuning.batch
        return self.tuning.first_record

    def fetched(self, asked: tuple[int, int], got_records: bool) -> None:
        """A fetch that asked for ``asked`` (``(wait_ms, min_bytes)``) came back."""
        if asked == self.tuning.first_record:
            self._refill()
            self._bucket = max(0.0, self._bucket - 1.0)
        elif not got_records:
            self.batching = False

    def _refill(self) -> None:
        now = self._clock()
        self._bucket = min(float(FIRST_RECORD_BURST),
                           self._bucket + (now - self._refilled_at) * self._refill_per_s)
        self._refilled_at = now


def adapt_to_traffic(consumer: Any, tuning: FetchTuning,
                     taken: Callable[[TopicPartition], bool] = lambda _tp: True
                     ) -> FetchPacer | None:
    """Make a started aiokafka consumer's fetches answer on the first record, batching when crowded.

    ``taken`` says whether the application takes a partition's records; the
    held records of one it does not take (Faust's changelog partitions once
    the worker recovered its state) will not be drained, so they never make a
    fetch batch. Returns the pacer that chooses (None when
    ``tuning.idle_wait_ms`` is 0: then nothing is touched and the consumer
    keeps the batch limits it was built with). Raises
    ``runtime.compat.MissingInternal`` if this aiokafka lacks the internals
    it needs (then set ``POSITIONING_FETCH_IDLE_WAIT_MS=0``).
    """
    if tuning.idle_wait_ms <= 0:
        return None
    pacer = FetchPacer(tuning)

    def choose(held: Collection[TopicPartition]) -> None:
        set_fetch_limits(consumer, *pacer.limits(any(taken(tp) for tp in held)))

    wrap_fetch_planning(consumer, choose)
    wrap_fetch_step(consumer, lambda step: pacer.fetched(asked_limits(step.request),
                                                         step.got_records))
    return pacer
