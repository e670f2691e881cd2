"""The worker's Faust transport fetches with the wait and minimum from the settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

from yarl import URL

from pipeline.transport import broker_url
from pipeline.worker import create_app
from runtime.fetch_tuning import FetchTuning
from runtime.settings import Settings


def test_broker_url_carries_the_fetch_tuning_for_every_server() -> None:
    url = broker_url("k1:9092, k2:9093", FetchTuning(wait_ms=7, min_bytes=4096, idle_wait_ms=300))
    servers = [URL(part) for part in url.split(";")]
    assert [(u.scheme, u.host, u.port) for u in servers] == [("positioning", "k1", 9092),
                                                              ("positioning", "k2", 9093)]
    assert {FetchTuning.from_query(u.query) for u in servers} == {FetchTuning(7, 4096, 300)}


def test_a_url_without_a_query_gets_the_defaults() -> None:
    assert FetchTuning.from_query(URL("positioning://k1:9092").query) == FetchTuning()


def test_the_worker_consumer_is_built_with_the_settings_fetch_tuning(tmp_path: Path) -> None:
    settings = Settings.from_env({"POSITIONING_HOME": str(tmp_path),
                                  "POSITIONING_FETCH_WAIT_MS": "9",
                                  "POSITIONING_FETCH_MIN_BYTES": "12345",
                                  "POSITIONING_FETCH_IDLE_WAIT_MS": "321"})

    async def build() -> tuple[int, int]:
        app = create_app(settings)
        thread = app.consumer._thread
        assert thread._tuning() == FetchTuning(9, 12345, 321)  # the long poll after empty fetches
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == (9, 12345)
