"""The origin's publisher and the edge's materializer never give up connecting to Kafka,
and log every failed attempt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from devstack.ports import free_port
from edge.materializer import Materializer
from edge.metrics import EdgeMetrics
from edge.render import Renderer
from edge.store import OfferStore
from edge.waiters import Waiters
from origin.publisher import LoginPublisher, PublisherUnavailable
from runtime.kafka_security import KafkaAccess, Role
from tests.helpers import wait_until_async

PLAINTEXT_EDGE = KafkaAccess(Role.EDGE, secured=False)  # no broker is reached here



def _failures(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno == level and "retrying in" in r.getMessage()]


async def test_the_publisher_keeps_trying_and_answers_unavailable_meanwhile(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="origin.publisher")
    nowhere = f"127.0.0.1:{free_port()}"
    publisher = LoginPublisher(nowhere, "logins", timeout_s=0.2,
                               access=KafkaAccess(Role.ORIGIN, secured=False))
    await publisher.start()  # returns after timeout_s, still trying
    try:
        assert not publisher.ready
        with pytest.raises(PublisherUnavailable):
            await publisher.publish(b"k", b"v")

        async def failed_three_times() -> bool:
            return len(_failures(caplog, "origin.publisher", logging.WARNING)) >= 3
        await wait_until_async(failed_three_times, 30, "three failed connection attempts")
        assert f"connecting to Kafka at {nowhere}" in _failures(
            caplog, "origin.publisher", logging.WARNING)[0]
    finally:
        await publisher.stop()


async def test_the_materializer_keeps_trying_until_cancelled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="edge.materializer")
    nowhere = f"127.0.0.1:{free_port()}"
    store = OfferStore(tmp_path)
    m = Materializer(nowhere, "offers", store, Waiters(10), EdgeMetrics("t"),
                     access=PLAINTEXT_EDGE, keyring=None, renderer=Renderer(None))
    running = asyncio.create_task(m.run())
    try:
        async def failed_three_times() -> bool:
            assert not running.done(), "the materializer gave up"
            return len(_failures(caplog, "edge.materializer", logging.ERROR)) >= 3
        await wait_until_async(failed_three_times, 30, "three failed connection attempts")
        assert nowhere in _failures(caplog, "edge.materializer", logging.ERROR)[0]
        assert not m.progress.ready
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        store.close()
    assert running.cancelled()
