"""A Faust transport whose consumer fetches in short, batched waits.

Faust's aiokafka driver creates its consumer with ``fetch_max_wait_ms=1500``
and ``fetch_min_bytes=1`` (hard-coded). aiokafka keeps one fetch in flight
for the partitions that have no buffered records, so a partition whose
records were just handed to the agent can wait behind that parked fetch
until data lands on another partition or the 1.5 s run out: at low rates
that is tens of milliseconds of positioning latency. And with one byte as
the minimum, a busy topic comes back one or two records per fetch, each
fetch a round trip through the consumer thread and the broker.

This transport is the same driver with the fetch wait and minimum taken
from the broker URL's query (``positioning://host:port?fetch_wait_ms=5&
fetch_min_bytes=65536&fetch_idle_wait_ms=500``; the worker builds it from
the settings): each fetch is answered on the first record while fetches are
sparse, batched while records crowd (runtime/fetch_tuning.py). It is
registered under the ``faust.transports`` entry point as ``positioning``
(see pyproject.toml).

Its consumer also hands every commit of the worker's source topic to the
worker's ``OffsetLedger`` (pipeline/offset_ledger.py), which commits only
what the worker really finished, and tells the ledger where each partition
restarts after Faust seeks it to the committed offset.

Faust has no public hooks for either; its private methods are overridden in
runtime/compat/faust.py, which calls the public hooks overridden here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping
from typing import Any, cast

from aiokafka import TopicPartition
from faust.types import TP

from pipeline.offset_ledger import OffsetLedger
from runtime.compat import faust as faust_compat
from runtime.compat.aiokafka import read_committed, set_fetch_limits
from runtime.fetch_tuning import FetchTuning, adapt_to_traffic


def broker_url(bootstrap: str, fetch: FetchTuning) -> str:
    """Faust's broker URL: the "positioning" transport is Faust's aiokafka driver
    with the fetch tuning in the query (this module)."""
    return ";".join(f"positioning://{server.strip()}?{fetch.query()}"
                    for server in bootstrap.split(","))


class BatchedFetchConsumerThread(faust_compat.ConsumerThread):
    """Faust's consumer thread, its consumer fetching with the broker URL's tuning."""

    def tuning(self) -> FetchTuning:
        """The fetch tuning in the broker URL's query (``broker_url``)."""
        return FetchTuning.from_query(self.transport.url[0].query)

    def configure_worker_consumer(self, consumer: Any) -> None:
        # aiokafka reads these when the consumer starts (it builds its Fetcher then).
        tuning = self.tuning()
        set_fetch_limits(consumer, tuning.wait_ms, tuning.min_bytes)
        # A `dlq replay` writes logins in a transaction; an aborted one is never a login.
        read_committed(consumer)

    def on_consumer_started(self, consumer: Any) -> None:
        adapt_to_traffic(consumer, self.tuning(), taken=taken_by_worker)


def taken_by_worker(tp: TopicPartition) -> bool:
    """Whether the worker takes this partition's records as they come: not a changelog's.

    Faust reads a table's changelog only to recover, then leaves its
    partitions assigned, "paused" in its own bookkeeping only: aiokafka
    fetches records that land on them once more and holds them, untaken,
    until the next rebalance (runtime/fetch_tuning.py).
    """
    return not tp.topic.endswith("-changelog")


log = logging.getLogger(__name__)


def ledger_of(app: Any) -> OffsetLedger | None:
    """The ledger the worker attached to its app (``app.offset_ledger``), if any."""
    ledger = getattr(app, "offset_ledger", None)
    return ledger if isinstance(ledger, OffsetLedger) else None


class Consumer(faust_compat.Consumer):
    """Faust's aiokafka consumer: tuned fetches, and every commit through the ledger."""

    thread_class = BatchedFetchConsumerThread

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek as Faust does, and tell the ledger where each source partition restarts."""
        offsets = await super().seek_to_committed()
        ledger = ledger_of(self.app)
        if ledger is not None:
            ledger.restart({tp: offset for tp, offset in offsets.items()
                            if tp.topic == ledger.topic})
        return offsets

    async def commit_finished(self) -> bool:
        """Commit the ledger's progress now, whether or not Faust sees any.

        Faust commits only when its own bookkeeping moved; after an
        out-of-order ack it may think a partition committed that the ledger
        held back, and then never come back to it.
        """
        return await self.commit_offsets({})

    async def commit_offsets(self, offsets: Mapping[TP, int]) -> bool:
        """Commit what the ledger allows, whatever Faust computed (``offsets``)."""
        ledger = ledger_of(self.app)
        if ledger is None:
            return await self.faust_commit(offsets)
        requested: dict[Hashable, int] = {tp: offset for tp, offset in offsets.items()}
        allowed = ledger.fence(requested)
        if not allowed:
            return False
        ledger.commit_started_at = time.monotonic()
        try:
            # The user state the committed logins wrote went to the table's changelog
            # through the producer, unawaited, and may sit on another broker than
            # their offers: flush, so the state a standby or a new owner restores
            # holds every login this commit says is done.
            await self.app.producer.flush()
            # The ledger answers with the partitions it was asked about (TPs).
            committed = await self.faust_commit(cast("Mapping[TP, int]", allowed))
        finally:
            ledger.commit_started_at = None
        if committed:
            ledger.committed(allowed)
        return committed


class Transport(faust_compat.Transport):
    Consumer = Consumer
