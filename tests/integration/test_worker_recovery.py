"""A worker killed with SIGKILL mid-stream and restarted loses no login and counts none twice."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from runtime.topics import ensure_topics
from tests.conftest import unique_settings
from tests.helpers import OfferReader, kill_mid_stream, start_worker, ticket_signer

pytestmark = pytest.mark.integration


async def test_sigkill_mid_stream_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Some model latency keeps many logins in flight at the moment of the kill.
    settings = unique_settings(kafka_bootstrap, tmp_path, model_latency_ms=20.0)
    await ensure_topics(settings)
    worker = start_worker(settings, tmp_path / "logs")
    try:
        async with OfferReader(settings) as reader:
            summary = await kill_mid_stream(settings, reader, worker.kill, rate=500,
                                            kill_after_offers=200)

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
