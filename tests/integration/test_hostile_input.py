"""Hostile and malformed input, against real processes: trust, strict parsing, bounded
HTTP, bad records on the offers topic, and the headers every edge answer carries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from devstack.ports import free_port
from edge.store import OfferStore
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from schemas.codec import offer_codec
from schemas.events import EXPIRES_AT_HEADER, LOGIN_ACCEPTED_AT_HEADER, offer_headers
from tests.conftest import unique_settings
from tests.edge_node import Edge, served_offers
from tests.helpers import Component, wait_until, wait_until_async
from tests.offers_feed import OfferFeed, offer_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An origin with no reachable Kafka: everything but a 202 can be tried on it."""
    root = tmp_path_factory.mktemp("hostile-origin")
    settings = unique_settings(f"127.0.0.1:{free_port()}", root, origin_port=free_port(),
                               login_timeout_s=1.0, http_body_timeout_s=1.0,
                               login_ip_from_body="never")
    proc = Component("origin", ["origin"], settings, root / "logs").start()
    url = f"http://127.0.0.1:{settings.origin_port}"
    proc.wait_http_ok(f"{url}/healthz", timeout=30)
    try:
        yield url
    finally:
        proc.stop()


async def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


# -- kind 1: trust -------------------------------------------------------------

def test_a_client_cannot_choose_the_address_its_login_comes_from(origin: str) -> None:
    for path in ("/login", "/offers/sync"):
        response = httpx.post(f"{origin}{path}", json={"user_id": "u1", "ip": "81.2.69.160"},
                              timeout=10)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "ip"


def test_a_client_chosen_forwarded_for_is_not_believed(origin: str) -> None:
    response = httpx.post(f"{origin}/offers/sync", json={"user_id": "u1"},
                          headers={"X-Forwarded-For": "6.6.6.6"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["country"] == "ZZ"  # 127.0.0.1, not 6.6.6.6's country


async def test_a_ticket_signed_with_the_old_published_key_is_refused(
        two_edges: tuple[Settings, Edge, Edge], tmp_path: Path) -> None:
    from schemas.tickets import TicketSigner

    settings, eu, _ = two_edges
    old_dev_key = "dev:insecure-development-secret-change-me"
    minted = TicketSigner.from_spec(old_dev_key, 2**40).issue(now_ms=2**62 // 1000)
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{eu.url}/offers/{minted.token}")).status_code == 401
        # Even with the node's key: a lifetime beyond the TTL, or issued in the future.
        key = TicketSigner.from_spec(settings.ticket_secret.get_secret_value(), 2**40)
        for ticket in (key.issue(), key.issue(now_ms=2**62 // 1000)):
            answer = await http.get(f"{eu.url}/offers/{ticket.token}")
            assert answer.status_code == 401, answer.text


# -- kind 2: strict parsing ---------------------------------------------------------

@pytest.mark.parametrize("body,content_type,status", [
    (b'{"user_id": "u1"}', "text/plain", 415),
    (b'{"user_id": "u1"}', "application/json; charset=latin-1", 415),
    (b'{"user_id": "nl-user\\n"}', "application/json", 422),
    (b'{"user_id": "u1", "ip": null}', "application/json", 422),
    (b'{"user_id": "u1", "ip": ""}', "application/json", 422),
    (b'{"user_id": "u1", "ip": "fe80::1%eth0"}', "application/json", 422),
    (b'{"user_id": "\\u0661\\u0662"}', "application/json", 422),
])
def test_strict_login_bodies(origin: str, body: bytes, content_type: str, status: int) -> None:
    response = httpx.post(f"{origin}/login", content=body,
                          headers={"content-type": content_type}, timeout=10)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("key", ['"', '""', "a b", 'a"b', "a\\b", "x" * 256, "caf\u00e9"])
def test_malformed_idempotency_keys_get_400(origin: str, key: str) -> None:
    response = httpx.post(f"{origin}/login", json={"user_id": "u1"},
                          headers={"Idempotency-Key": key.encode("utf-8")},
                          timeout=10)
    assert response.status_code == 400 and response.json()["field"] == "Idempotency-Key"


async def test_a_newline_in_a_ticket_is_malformed_not_forged(
        two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, eu, _ = two_edges
    ticket = OfferFeed(settings).signer.issue().token
    kid, payload, mac = ticket.split(".")
    async with httpx.AsyncClient(timeout=10) as http:
        for bad in (f"{kid}%0A.{payload}.{mac}", f"{kid}.{payload}.{mac}%0A",
                    f"{kid}.{payload}%20.{mac}"):
            answer = await http.get(f"{eu.url}/offers/{bad}")
            assert answer.status_code == 400, (bad, answer.text)


@pytest.mark.parametrize("wait", ["nan", "inf", "1e3", " 5", "-1", "\u0663", "1_0", "5,5"])
async def test_wait_takes_plain_decimal_seconds_only(two_edges: tuple[Settings, Edge, Edge],
                                                     wait: str) -> None:
    settings, eu, _ = two_edges
    ticket = OfferFeed(settings).signer.issue().token
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{eu.url}/offers/{ticket}", params={"wait": wait})
    assert answer.status_code == 400, wait


# -- kind 3: bounded HTTP ----------------------------------------------------------

async def test_huge_headers_get_431_on_both_servers(origin: str,
                                                    two_edges: tuple[Settings, Edge, Edge]) -> None:
    _, eu, _ = two_edges
    for port in (int(origin.rsplit(":", 1)[1]), eu.port):
        answer = await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
                                    + b"a" * 200_000 + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), (port, answer[:100])


async def test_a_body_shorter_than_its_content_length_gets_408(origin: str) -> None:
    port = int(origin.rsplit(":", 1)[1])
    answer = await raw_exchange(port, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                b"application/json\r\nContent-Length: 50\r\n\r\n{\"user_id\"")
    assert answer.startswith(b"HTTP/1.1 408")


async def test_aborted_long_polls_free_their_waiter_slots(
        two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, eu, _ = two_edges
    signer = OfferFeed(settings).signer
    sockets = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", eu.port))
        token = signer.issue().token
        sock.sendall(f"GET /offers/{token}?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sockets.append(sock)

    async def all_waiting() -> bool:
        return eu.metric('edge_open_waiters{region="eu"}') >= 200
    await wait_until_async(all_waiting, 15, "200 waiting requests")
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # an abort (RST)

    async def released() -> bool:
        return eu.metric('edge_open_waiters{region="eu"}') == 0
    await wait_until_async(released, 3, "the aborted requests' waiter slots to be freed")


# -- kind 4: one path for every record ---------------------------------------------------

async def test_bad_records_are_skipped_the_same_live_and_catching_up(
        two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, eu, us = two_edges
    async with OfferFeed(settings) as feed:
        good, _ = await feed.publish()
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
        await producer.start()
        try:
            bad_tickets = []
            for header in (b"soon", "\u0661\u0662".encode(), b" 12", b"-5", b"1e9"):
                ticket = feed.signer.issue()
                offer = offer_for(ticket)
                await producer.send_and_wait(
                    settings.offers_topic, offer_codec().encode(offer),
                    key=ticket.ticket_id.encode(),
                    headers=[(EXPIRES_AT_HEADER, header),
                             (LOGIN_ACCEPTED_AT_HEADER, str(offer["login_accepted_at"]).encode())])
                bad_tickets.append(ticket)
            await producer.send_and_wait(settings.offers_topic, b"\x00garbage", key=b"k" * 22)
            await producer.send_and_wait(settings.offers_topic, offer_codec().encode(offer),
                                         key=b"\x00offset\x000", headers=offer_headers(offer))
        finally:
            await producer.stop()
        last, _ = await feed.publish()
    async with httpx.AsyncClient(timeout=20) as http:
        for edge in (eu, us):  # live: the good ones served, the bad ones not stored
            assert (await http.get(f"{edge.url}/offers/{last.token}",
                                   params={"wait": 15})).status_code == 200
            assert (await http.get(f"{edge.url}/offers/{good.token}")).status_code == 200
            for ticket in bad_tickets:
                assert (await http.get(f"{edge.url}/offers/{ticket.token}")).status_code == 404
        assert eu.metric('edge_records_undecodable_total') >= 7
    # A node catching up through the same records (from nothing) stays alive and ready.
    late = Edge(settings, "late", eu.root).start(ready=True)
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            assert (await http.get(f"{late.url}/offers/{last.token}")).status_code == 200
            for ticket in bad_tickets:
                assert (await http.get(f"{late.url}/offers/{ticket.token}")).status_code == 404

        def rendered() -> bool:
            return bool(late.readyz()["all_served_as_json"])
        wait_until(rendered, 30, "the late node to render what it caught up on")
    finally:
        late.component.stop()
        eu.component.stop()
    try:
        a, b = OfferStore(eu.data_dir), OfferStore(late.data_dir)
        try:
            assert served_offers(a) == served_offers(b)
        finally:
            a.close()
            b.close()
    finally:
        eu.start()


# -- kind 5: every edge answer carries its promises -----------------------------------------

async def test_every_edge_answer_has_the_edge_headers_and_no_redirect(
        two_edges: tuple[Settings, Edge, Edge]) -> None:
    settings, eu, _ = two_edges
    ticket = OfferFeed(settings).signer.issue().token
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
        answers = {
            "trailing slash": await http.get(f"{eu.url}/offers/{ticket}/"),
            "unknown path": await http.get(f"{eu.url}/nowhere"),
            "wrong method": await http.post(f"{eu.url}/offers/{ticket}"),
            "metrics (not on the public port)": await http.get(f"{eu.url}/metrics"),
            "openapi": await http.get(f"{eu.url}/openapi.json"),
            "lookup": await http.get(f"{eu.url}/offers/{ticket}"),
        }
    for what, answer in answers.items():
        assert answer.status_code < 300 or answer.status_code >= 400, what
        assert answer.headers.get("cache-control") == "private, no-store", what
        assert answer.headers.get("x-edge-region") == "eu", what
        assert ticket not in answer.headers.get("location", ""), what
    assert answers["trailing slash"].status_code == 404
    assert answers["wrong method"].status_code == 405
