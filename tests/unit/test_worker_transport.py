"""The worker's Faust transport fetches with the wait and minimum from the settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from yarl import URL

from pipeline.transport import BatchedFetchConsumerThread, broker_url, taken_by_worker
from pipeline.worker import create_app
from runtime.compat import MissingInternal
from runtime.compat.aiokafka import fetch_limits, set_fetch_limits
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
    """Read back through aiokafka's compat view, whose private names test_compat.py
    checks against the installed aiokafka; tests/integration/test_fetch_tuning.py
    shows the broker is asked for these values."""
    settings = Settings.from_env({"POSITIONING_HOME": str(tmp_path),
                                  "POSITIONING_KAFKA_SECURITY": "plaintext",
                                  "POSITIONING_FETCH_WAIT_MS": "9",
                                  "POSITIONING_FETCH_MIN_BYTES": "12345",
                                  "POSITIONING_FETCH_IDLE_WAIT_MS": "321"})

    async def build() -> tuple[int, int]:
        app = create_app(settings)
        thread = app.consumer.consumer_thread
        assert isinstance(thread, BatchedFetchConsumerThread)
        assert thread.tuning() == FetchTuning(9, 12345, 321)  # the long poll after empty fetches
        consumer = thread.create_worker_consumer()
        try:
            return fetch_limits(consumer)
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == (9, 12345)


def test_fetch_limits_are_not_written_where_aiokafka_would_not_read_them() -> None:
    """A renamed attribute upstream must fail, not grow a new attribute nobody reads."""
    class RenamedUpstream:
        _fetcher = None
        _max_wait = 500

    consumer = RenamedUpstream()
    with pytest.raises(MissingInternal, match="_fetch_max_wait_ms"):
        set_fetch_limits(consumer, 5, 64 * 1024)  # type: ignore[arg-type]
    assert not hasattr(consumer, "_fetch_min_bytes")


def test_the_worker_takes_the_records_of_its_sources_not_of_its_changelogs() -> None:
    assert taken_by_worker(TopicPartition("logins", 3))
    assert taken_by_worker(TopicPartition("positioning-worker-__assignor-__leader", 0))
    assert not taken_by_worker(TopicPartition("positioning-worker-user-state-changelog", 3))
