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
the settings), long-polling while the topic is quiet
(runtime/fetch_tuning.py). It is
registered under the ``faust.transports`` entry point as ``positioning``
(see pyproject.toml).

Its consumer also hands every commit of the worker's source topic to the
worker's ``OffsetLedger`` (pipeline/offset_ledger.py), which commits only
what the worker really finished, and tells the ledger where each partition
restarts after Faust seeks it to the committed offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from pipeline.offset_ledger import OffsetLedger
from runtime.fetch_tuning import FetchTuning, adapt_to_traffic


def broker_url(bootstrap: str, fetch: FetchTuning) -> str:
    """Faust's broker URL: the "positioning" transport is Faust's aiokafka driver
    with the fetch tuning in the query (this module)."""
    return ";".join(f"positioning://{server.strip()}?{fetch.query()}"
                    for server in bootstrap.split(","))


class BatchedFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _tuning(self) -> FetchTuning:
        return FetchTuning.from_query(self.transport.url[0].query)

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        tuning = self._tuning()
        # aiokafka reads these when the consumer starts (it builds its Fetcher then).
        consumer._fetch_max_wait_ms = tuning.wait_ms
        consumer._fetch_min_bytes = tuning.min_bytes
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        adapt_to_traffic(self._consumer, self._tuning())


log = logging.getLogger(__name__)


def ledger_of(app: Any) -> OffsetLedger | None:
    """The ledger the worker attached to its app (``app.offset_ledger``), if any."""
    ledger = getattr(app, "offset_ledger", None)
    return ledger if isinstance(ledger, OffsetLedger) else None


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return BatchedFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)

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

        Faust calls ``_commit`` only when its own bookkeeping moved; after an
        out-of-order ack it may think a partition committed that the ledger
        held back, and then never come back to it.
        """
        return await self._commit({})

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit what the ledger allows, whatever Faust computed."""
        ledger = ledger_of(self.app)
        if ledger is None:
            return bool(await super()._commit(offsets))
        allowed = ledger.fence(offsets)
        if not allowed:
            return False
        ledger.commit_started_at = time.monotonic()
        try:
            committed = bool(await super()._commit(allowed))
        finally:
            ledger.commit_started_at = None
        if committed:
            ledger.committed(allowed)
        return committed


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
