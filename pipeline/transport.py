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
fetch_min_bytes=65536``; the worker builds it from the settings). It is
registered under the ``faust.transports`` entry point as ``positioning``
(see pyproject.toml).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from faust.transport.drivers import aiokafka as faust_aiokafka
from yarl import URL

from positioning.settings import Settings


class FetchTuning(NamedTuple):
    wait_ms: int = 5
    min_bytes: int = 1

    def query(self) -> str:
        return f"fetch_wait_ms={self.wait_ms}&fetch_min_bytes={self.min_bytes}"

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchTuning:
        return cls(settings.fetch_wait_ms, settings.fetch_min_bytes)

    @classmethod
    def from_url(cls, url: URL) -> FetchTuning:
        default = cls()
        return cls(int(url.query.get("fetch_wait_ms", default.wait_ms)),
                   int(url.query.get("fetch_min_bytes", default.min_bytes)))


class BatchedFetchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        tuning = FetchTuning.from_url(transport.url[0])
        # aiokafka reads these when the consumer starts (it builds its Fetcher then).
        consumer._fetch_max_wait_ms = tuning.wait_ms
        consumer._fetch_min_bytes = tuning.min_bytes
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return BatchedFetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
