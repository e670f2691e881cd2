"""Edge nodes against the real broker: materializing, waiting, SSE, tombstones, crash resume;
and an edge added mid-stream on the session's 3-node cluster."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from edge.store import OfferStore
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import ensure_topics
from schemas.tickets import Ticket
from tests.conftest import register_cluster, unique_settings
from tests.edge_node import Edge, served_offers
from tests.helpers import wait_until, wait_until_async
from tests.offers_feed import OfferFeed

pytestmark = pytest.mark.integration


async def test_an_offer_is_readable_at_both_edges(two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, eu, us = two_edges
    async with OfferFeed(settings) as feed:
        ticket, offer = await feed.publish()
    async with httpx.AsyncClient(timeout=10) as http:
        for edge in (eu, us):
            response = await http.get(f"{edge.url}/offers/{ticket.token}", params={"wait": 10})
            assert response.status_code == 200
            assert response.json() == offer
            assert response.headers["cache-control"] == "private, no-store"
            assert response.headers["x-edge-region"] == edge.region
            assert "lookup;dur=" in response.headers["server-timing"]


async def test_a_waiting_request_returns_as_soon_as_the_offer_lands(
        two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, eu, _ = two_edges
    async with OfferFeed(settings) as feed, httpx.AsyncClient(timeout=20) as http:
        ticket = feed.signer.issue()
        pending = await http.get(f"{eu.url}/offers/{ticket.token}")
        assert pending.status_code == 404 and pending.json()["status"] == "pending"
        waiting = asyncio.create_task(http.get(f"{eu.url}/offers/{ticket.token}",
                                               params={"wait": 15}))

        async def registered() -> bool:
            return eu.metric('edge_open_waiters{region="eu"}') >= 1
        await wait_until_async(registered, 10, "the request to be waiting")
        started = time.monotonic()
        await feed.publish(ticket)
        response = await waiting
        assert response.status_code == 200
        assert time.monotonic() - started < 10
        # The node's own clock: from applying the offer to answering.
        since_apply = float(response.headers["server-timing"].split("since-apply;dur=")[1])
        assert since_apply < 50, since_apply
        assert eu.metric('edge_open_waiters{region="eu"}') == 0


async def test_server_sent_events_deliver_the_offer(two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, _, us = two_edges
    async with OfferFeed(settings) as feed, httpx.AsyncClient(timeout=20) as http:
        ticket = feed.signer.issue()
        async with http.stream("GET", f"{us.url}/offers/{ticket.token}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert (await anext(lines)).startswith(":")
            _, offer = await feed.publish(ticket)
            event = data = None
            async for line in lines:
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                    break
    assert event == "offer"
    assert httpx.Response(200, content=data).json() == offer


async def test_a_tombstone_revokes_the_offer(two_edges: tuple[Settings, Edge, Edge]) -> None:
    """A revoked offer answers 410 "revoked", never 404 "pending" (which would make
    ``?wait`` wait for an offer that will never come)."""
    settings, eu, us = two_edges
    async with OfferFeed(settings) as feed, httpx.AsyncClient(timeout=10) as http:
        ticket, _ = await feed.publish()
        for edge in (eu, us):
            found = await http.get(f"{edge.url}/offers/{ticket.token}", params={"wait": 10})
            assert found.status_code == 200
        await feed.tombstone(ticket)
        for edge in (eu, us):
            async def gone(url: str = edge.url) -> bool:
                return (await http.get(f"{url}/offers/{ticket.token}")).status_code == 410
            await wait_until_async(gone, 10, f"the tombstone at {edge.region}")
            revoked = await http.get(f"{edge.url}/offers/{ticket.token}", params={"wait": 10})
            assert revoked.status_code == 410 and revoked.json()["status"] == "revoked"
            assert revoked.elapsed.total_seconds() < 5
        # Revoked before its offer ever arrived: a waiting request wakes with 410.
        never = feed.signer.issue()
        waiting = asyncio.create_task(http.get(f"{eu.url}/offers/{never.token}",
                                               params={"wait": 20}))
        async def registered() -> bool:
            return eu.metric('edge_open_waiters{region="eu"}') >= 1
        await wait_until_async(registered, 10, "the request to wait")
        await feed.tombstone(never)
        answer = await waiting
        assert answer.status_code == 410 and answer.elapsed.total_seconds() < 15


async def test_rejected_tickets(two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, eu, _ = two_edges
    from schemas.tickets import TicketSigner

    forger = TicketSigner.from_spec("test:" + "f" * 32, 900)
    expired = TicketSigner.from_spec(settings.ticket_secret.get_secret_value(), 1).issue(now_ms=1000)
    async with httpx.AsyncClient(timeout=10) as http:
        cases = {"not-a-ticket": 400, forger.issue().token: 401, expired.token: 410}
        for token, status in cases.items():
            response = await http.get(f"{eu.url}/offers/{token}")
            assert response.status_code == status, token
            assert response.json()["status"] == "rejected"
        assert (await http.get(f"{eu.url}/offers/x", params={"wait": "soon"})).status_code == 400


async def test_edge_killed_mid_ingestion_resumes_exactly(kafka_bootstrap: str, tmp_path: Path) -> None:
    # Catching up writes without RocksDB's log and flushes every 5,000 records here.
    settings = unique_settings(kafka_bootstrap, tmp_path, edge_catch_up_flush_records=5_000)
    await ensure_topics(settings)
    total = 150_000
    async with OfferFeed(settings) as feed:
        await feed.flood(total)
    steady = Edge(settings, "steady", tmp_path).start(ready=False)
    crashing = Edge(settings, "crashing", tmp_path).start(ready=False)
    try:
        wait_until(lambda: crashing.readyz()["applied_since_start"] > 20_000, 60,
                   "the node to be mid-ingestion")
        crashing.component.kill()
        crashing.start()
        steady.component.wait_http_ok(f"{steady.url}/readyz", timeout=120)
        after = crashing.readyz()
        steady_ready = steady.readyz()
    finally:
        steady.component.stop()
        crashing.component.stop()
    resumed = sum(after["resumed_from"].values())
    assert 0 < resumed < total, "it resumed from its stored offsets, not from the beginning"
    assert resumed + after["applied_since_start"] == total, "no record read twice, none skipped"
    # /readyz reports the catch-up: from nothing, and from where the crash left off.
    assert steady_ready["applied_during_catch_up"] == total
    assert after["applied_during_catch_up"] == total - resumed
    assert 0 < steady_ready["caught_up_after_s"] < 120
    assert 0 <= after["caught_up_after_s"] < 120
    a, b = OfferStore(steady.data_dir), OfferStore(crashing.data_dir)
    try:
        assert a.offsets() == b.offsets()
        served = served_offers(a)
        assert len(served) == total
        assert served == served_offers(b)
    finally:
        a.close()
        b.close()


async def test_partitions_added_later_are_materialized(kafka_bootstrap: str, tmp_path: Path) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

    settings = unique_settings(kafka_bootstrap, tmp_path, partitions=2)
    await ensure_topics(settings)
    edge = Edge(settings, "grow", tmp_path).start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
        await admin.start()
        try:
            await admin.create_partitions({settings.offers_topic: NewPartitions(total_count=4)})
        finally:
            await admin.close()
        async with OfferFeed(settings) as feed:
            ticket = feed.signer.issue()
            _, offer = await feed.publish(ticket)  # placed by key; now also new partitions exist
            tickets = [feed.signer.issue() for _ in range(40)]
            for t in tickets:
                await feed.publish(t)

        def all_partitions_followed() -> bool:
            return set(edge.readyz()["lag"]) == {"0", "1", "2", "3"}
        wait_until(all_partitions_followed, 30, "the edge to follow the new partitions")
        async with httpx.AsyncClient(timeout=20) as http:
            for t in tickets:
                r = await http.get(f"{edge.url}/offers/{t.token}", params={"wait": 15})
                assert r.status_code == 200
    finally:
        edge.component.stop()


async def test_edge_follows_the_topic_again_after_the_broker_crashes(tmp_path: Path) -> None:
    """A broker killed with SIGKILL and restarted: the edge serves new offers again."""
    import os
    import signal

    from devstack.broker.local import LocalBroker
    from devstack.ports import free_port_pair

    broker = LocalBroker(Settings(home=tmp_path / "broker",
                                  kafka_listen=f"127.0.0.1:{free_port_pair()}"))
    status, _ = await asyncio.to_thread(broker.start)  # start() runs its own event loop
    register_cluster(broker.address, broker.settings)
    try:
        settings = unique_settings(broker.address, tmp_path)
        await ensure_topics(settings)
        edge = Edge(settings, "survivor", tmp_path).start()
        try:
            async with OfferFeed(settings) as feed:
                before, _ = await feed.publish()
            assert status.pid is not None
            os.kill(status.pid, signal.SIGKILL)
            wait_until(lambda: not broker.status().running, 10, "the broker to die")
            await asyncio.to_thread(broker.start)
            async with OfferFeed(settings) as feed:
                after, offer = await feed.publish()
            async with httpx.AsyncClient(timeout=60) as http:
                response = await http.get(f"{edge.url}/offers/{after.token}", params={"wait": 30})
                assert response.status_code == 200
                assert response.json() == offer
                assert (await http.get(f"{edge.url}/offers/{before.token}")).status_code == 200
        finally:
            edge.component.stop()
    finally:
        broker.stop()


@pytest.mark.cluster
async def test_on_three_nodes_an_edge_added_mid_stream_catches_up_and_agrees(
        three_node_cluster: str, tmp_path: Path) -> None:
    """A third edge started while offers flow is ready only once it serves everything
    written before it started, as the first two do; in the end all three serve the
    same offers, byte for byte, and none of the tombstoned ones."""
    settings = unique_settings(three_node_cluster, tmp_path)
    await ensure_topics(settings)
    first = [Edge(settings, region, tmp_path) for region in ("eu", "us")]
    late = Edge(settings, "ap", tmp_path)
    await asyncio.gather(*(asyncio.to_thread(edge.start) for edge in first))
    published: list[Ticket] = []
    revoked: set[str] = set()      # every 4th ticket is tombstoned right after its offer
    stop = asyncio.Event()

    async def stream(feed: OfferFeed) -> None:
        while not stop.is_set():
            ticket, _ = await feed.publish()
            published.append(ticket)
            if len(published) % 4 == 0:
                await feed.tombstone(ticket)
                revoked.add(ticket.ticket_id)

    def published_at_least(n: int) -> Callable[[], Awaitable[bool]]:
        async def enough() -> bool:
            return len(published) >= n
        return enough

    async def served(http: httpx.AsyncClient, edge: Edge,
                     tickets: list[Ticket]) -> dict[str, tuple[int, bytes]]:
        """ticket id -> (status, body) of the edge's answer for each ticket, at once."""
        answers = await asyncio.gather(*(http.get(f"{edge.url}/offers/{t.token}")
                                         for t in tickets))
        return {t.ticket_id: (a.status_code, a.content) for t, a in zip(tickets, answers,
                                                                         strict=True)}

    limits = httpx.Limits(max_connections=20)
    try:
        async with (OfferFeed(settings) as feed,
                    httpx.AsyncClient(timeout=httpx.Timeout(20, pool=None), limits=limits) as http):
            flowing = asyncio.create_task(stream(feed))
            try:
                await wait_until_async(published_at_least(200), 60, "200 offers")
                before = list(published)       # acknowledged before the late edge starts
                before_revoked = set(revoked)
                await asyncio.to_thread(late.start)    # returns once /readyz answers 200
                # Ready: what was written before it started is served at once, as by the
                # others (skipped: a last ticket whose tombstone was still being written).
                settled_before = [t for i, t in enumerate(before)
                                  if t.ticket_id in before_revoked or (i + 1) % 4]
                seen = [await served(http, edge, settled_before) for edge in (late, *first)]
                ready_with = len(published)
                await wait_until_async(published_at_least(ready_with + 100), 60,
                                       "100 more offers once the late edge is ready")
            finally:
                stop.set()
                await flowing
            assert len(before) < ready_with, "the late edge did not start mid-stream"
            expected = {t.ticket_id: 410 if t.ticket_id in before_revoked else 200
                        for t in settled_before}
            assert {k: status for k, (status, _) in seen[0].items()} == expected
            assert seen[0] == seen[1] == seen[2]

            # The stream over, all three serve every offer and no tombstoned one ...
            edges = [late, *first]
            final: list[dict[str, tuple[int, bytes]]] = []
            want = {t.ticket_id: 410 if t.ticket_id in revoked else 200 for t in published}

            async def settled() -> bool:
                final[:] = [await served(http, edge, published) for edge in edges]
                return all({k: s for k, (s, _) in f.items()} == want for f in final)
            await wait_until_async(settled, 60, "every edge to serve the whole stream",
                                   interval=0.5)
            # ... with the same bodies, byte for byte.
            assert final[0] == final[1] == final[2]
            assert len(revoked) == len(published) // 4 and len(published) > 300
            for ticket in published:
                body = json.loads(final[0][ticket.ticket_id][1])
                if ticket.ticket_id in revoked:
                    assert body["status"] == "revoked"
                else:
                    assert body["ticket_id"] == ticket.ticket_id
    finally:
        for edge in (*first, late):
            edge.component.stop()


async def test_a_damaged_store_is_moved_aside_and_rebuilt_from_the_topic(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """Kafka Streams' answer to a corrupted state store: wipe it and restore it from the
    changelog. The edge's store is a copy of ``offers``: it is rebuilt, never served from."""
    settings = unique_settings(kafka_bootstrap, tmp_path)
    await ensure_topics(settings)
    async with OfferFeed(settings) as feed:
        ticket, offer = await feed.publish()
        await feed.flood(500)
    edge = Edge(settings, "damaged", tmp_path).start()
    edge.component.stop()
    store_dir = edge.data_dir / "offers.rocksdb"
    for manifest in store_dir.glob("MANIFEST-*"):
        manifest.write_bytes(b"not a manifest" * 10)
    edge.start()
    try:
        ready = edge.readyz()
        assert ready["resumed_from"] == {} and ready["applied_during_catch_up"] == 501
        response = httpx.get(f"{edge.url}/offers/{ticket.token}", timeout=10)
        assert response.status_code == 200 and response.json() == offer
    finally:
        edge.component.stop()
    assert [p.name.split("-")[0] for p in edge.data_dir.glob("offers.rocksdb.damaged-*")] == [
        "offers.rocksdb.damaged"]
