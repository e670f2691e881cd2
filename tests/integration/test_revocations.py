"""Revocations hold for an edge that was away while compaction removed their tombstones:
tombstones outlive the tickets they revoke, and a topic that keeps them shorter is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from pipeline.records import OutRecord
from runtime.topics import TopicMismatch, ensure_topics
from schemas.codec import offer_codec
from schemas.events import EXPIRES_AT_HEADER, offer_headers
from tests.compaction import alter_offers, compact_now
from tests.conftest import unique_settings
from tests.edge_node import Edge
from tests.helpers import wait_until
from tests.offers_feed import OfferFeed, offer_for

pytestmark = pytest.mark.integration


def _status(edge: Edge, token: str) -> tuple[int, str, str]:
    answer = httpx.get(f"{edge.url}/offers/{token}", timeout=5)
    body = answer.json()
    return answer.status_code, body.get("status", "offer"), body.get("error", "")


def test_an_edge_back_after_its_tombstone_was_compacted_away_never_serves_the_revoked_offer(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    # Tickets of 10 s, tombstones kept 12 s: near the shortest the settings allow (10 s + 1 s of
    # clock skew), so the test can watch a tombstone go.
    settings = unique_settings(kafka_bootstrap, tmp_path, ticket_ttl_s=10, ticket_clock_skew_s=1,
                               offers_tombstone_retention_s=12, offers_compaction_lag_s=1)
    asyncio.run(ensure_topics(settings))
    stays, away = Edge(settings, "stays", tmp_path).start(), Edge(settings, "away", tmp_path)
    away.start()
    try:
        async def offer() -> tuple[str, bytes, int]:
            async with OfferFeed(settings) as feed:
                ticket = feed.signer.issue()
                body = offer_for(ticket)
                await feed.send([OutRecord(settings.offers_topic, ticket.ticket_id.encode(),
                                           offer_codec().encode(body), offer_headers(body))])
                return ticket.token, ticket.ticket_id.encode(), int(body["expires_at"])

        token, key, expires_at = asyncio.run(offer())
        for edge in (stays, away):
            wait_until(lambda e=edge: _status(e, token)[0] == 200, 3, f"{edge.region} to serve")
        away.component.stop()

        async def revoke() -> None:
            async with OfferFeed(settings) as feed:
                await feed.send([OutRecord(settings.offers_topic, key, None,
                                           [(EXPIRES_AT_HEADER, str(expires_at).encode())])])

        asyncio.run(revoke())
        wait_until(lambda: _status(stays, token)[:2] == (410, "revoked"), 10, "the revocation")
        # The offer goes at once (its tombstone follows it), the tombstone 12 s later.
        asyncio.run(compact_now(settings, done=lambda counts: counts[key] == 0, timeout_s=180))
        away.start()
        answer = _status(away, token)
        assert answer[0] != 200, answer
        # The ticket has expired by then: both answer so from the ticket, before the store.
        assert answer == _status(stays, token)
        assert answer[:2] == (410, "rejected") and "expired" in answer[2]
    finally:
        stays.component.stop()
        away.component.stop()


def test_a_topic_that_keeps_tombstones_shorter_than_the_settings_ask_is_refused(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(settings))
    alter_offers(settings, {"delete.retention.ms": "1000"})
    with pytest.raises(TopicMismatch, match=r"has delete.retention.ms 1000, below the 86400000 "
                                            r"the settings ask \(an edge away for longer could "
                                            r"serve a revoked offer\)"):
        asyncio.run(ensure_topics(settings))
