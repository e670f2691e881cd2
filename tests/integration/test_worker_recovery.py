"""A worker killed with SIGKILL mid-stream and restarted loses no login and counts none twice."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from loadtest.produce import produce
from runtime.topics import ensure_topics
from tests.conftest import unique_settings
from tests.helpers import OfferReader, start_worker, ticket_signer, wait_until_async

pytestmark = pytest.mark.integration


async def test_sigkill_mid_stream_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Some model latency keeps many logins in flight at the moment of the kill.
    settings = unique_settings(kafka_bootstrap, tmp_path, model_latency_ms=20.0)
    await ensure_topics(settings)
    worker = start_worker(settings, tmp_path / "logs")
    try:
        async with OfferReader(settings) as reader:
            sending = asyncio.create_task(
                produce(settings, count=1500, rate=500, users=150, progress=False,
                        keep_tickets=True))

            async def some_offers_arrived() -> bool:
                await reader.poll()
                return len(reader.offers) >= 200

            await wait_until_async(some_offers_arrived, 60, "the first offers")
            worker.kill()
            killed_with = len(reader.offers)
            summary = await sending
            assert summary.failed == 0
            assert killed_with < 1500, "the kill came too late to test anything"

            worker = start_worker(settings, tmp_path / "logs", name="worker-restarted")
            signer = ticket_signer(settings, 900)
            ticket_ids = [signer.verify(t).ticket_id for t in summary.tickets]
            try:
                offers = await reader.wait_for(ticket_ids, timeout=120)
            except AssertionError as exc:  # say what the restarted worker was doing
                raise AssertionError(f"{exc}\nrestarted worker's log:\n"
                                     f"{worker.log_text()[-4000:]}") from None
    finally:
        worker.stop()

    assert len(offers) == 1500
    visits: dict[str, list[int]] = defaultdict(list)
    for offer in offers.values():
        visits[offer["user_id"]].append(offer["visit"])
    for user, seen in visits.items():
        # Each login counted exactly once: visits 1..n, no gaps, no repeats.
        assert sorted(seen) == list(range(1, len(seen) + 1)), user
