"""A Faust transport whose consumer does not park fetches for 1.5 s.

Faust's aiokafka driver creates its consumer with ``fetch_max_wait_ms=1500``
(hard-coded). aiokafka keeps one fetch in flight for the partitions that have
no buffered records, so a partition whose records were just handed to the
agent can wait behind that parked fetch until data lands on another
partition or the 1.5 s run out: at low rates that is tens of milliseconds of
positioning latency. This transport is the same driver with a short wait.
It is registered under the ``faust.transports`` entry point as
``positioning`` (see pyproject.toml), so the worker's broker URL is
``positioning://host:port``.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 5


class LowLatencyConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this when the consumer starts (it builds its Fetcher then).
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
