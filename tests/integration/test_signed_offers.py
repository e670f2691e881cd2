"""Signed offers against a real broker: a stolen worker credential without the signing key
writes every kind of bad record to ``offers``, and no edge serves one, live or catching up."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.records import OutRecord
from runtime.kafka_security import Role, client_options
from runtime.offer_keys import VerifyKeyring, verify_keys_file
from runtime.settings import Settings
from runtime.topics import ensure_topics
from schemas.codec import offer_codec
from schemas.events import EXPIRES_AT_HEADER, offer_headers
from schemas.offer_signatures import SIGNATURE_HEADERS, OfferSigner, SignedFields
from schemas.tickets import Ticket
from tests.conftest import unique_settings
from tests.edge_node import Edge
from tests.helpers import wait_until
from tests.offers_feed import OfferFeed, offer_for

pytestmark = pytest.mark.integration

ATTACKS = ("unsigned", "forged", "own_key", "moved", "altered_expiry", "altered_value",
           "stripped", "forged_tombstone", "moved_tombstone", "replayed_after_tombstone",
           "replayed_older")
CASES = 1_100


def _headers(record: OutRecord) -> list[tuple[str, bytes]]:
    return list(record.headers or [])


def _unsigned(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in headers if k not in SIGNATURE_HEADERS]


def _with(headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in headers]


class Case:
    """One attack, and what an edge must answer for its ticket afterwards."""

    def __init__(self, kind: str, ticket: Ticket, expect: int, offer: dict[str, Any] | None):
        self.kind, self.ticket, self.expect, self.offer = kind, ticket, expect, offer


async def _attack(settings: Settings, feed: OfferFeed, rng: random.Random
                  ) -> tuple[list[Case], int]:
    """Genuine records through ``feed``; then, as the worker's principal, CASES attacks.
    Returns the cases and how many attack records were written."""
    topic = settings.offers_topic
    codec = offer_codec()
    kid = next(iter(VerifyKeyring(verify_keys_file(settings)).trusted))
    forger = OfferSigner(topic, kid, Ed25519PrivateKey.generate())       # the right name
    stranger = OfferSigner(topic, "thief", Ed25519PrivateKey.generate())  # a key of its own
    cases: list[Case] = []
    bad: list[OutRecord] = []
    for i in range(CASES):
        kind = ATTACKS[i % len(ATTACKS)]
        ticket = feed.signer.issue()
        key = ticket.ticket_id.encode()
        offer = offer_for(ticket, user_id=f"victim-{i}")
        value = codec.encode(offer)
        record = OutRecord(topic, key, value, offer_headers(offer))
        if kind in ("unsigned", "forged", "own_key", "stripped"):
            # A ticket the worker never made an offer for: nothing may be served.
            cases.append(Case(kind, ticket, 404, None))
            fields = SignedFields(key, value, offer["expires_at"], offer["login_accepted_at"])
            if kind == "unsigned":
                bad.append(record)
            elif kind == "stripped":
                (genuine,) = feed.signed([record])
                bad.append(genuine._replace(headers=_unsigned(_headers(genuine))))
            else:
                signer = forger if kind == "forged" else stranger
                (extra,) = signer.sign([fields])
                bad.append(record._replace(headers=[*_headers(record), *extra]))
        elif kind == "moved":
            # A genuine offer of another ticket, put under this ticket's key.
            other = feed.signer.issue()
            (genuine,) = feed.signed([OutRecord(topic, other.ticket_id.encode(), value,
                                                offer_headers(offer))])
            cases.append(Case(kind, ticket, 404, None))
            bad.append(genuine._replace(key=key))
        elif kind in ("altered_expiry", "altered_value", "forged_tombstone", "moved_tombstone"):
            # A real offer is served; the attack must not change or revoke it.
            await feed.send([record])
            cases.append(Case(kind, ticket, 200, offer))
            (genuine,) = feed.signed([record])
            if kind == "altered_expiry":
                later = str(offer["expires_at"] + rng.randint(1, 10**9)).encode()
                bad.append(genuine._replace(headers=_with(_headers(genuine), EXPIRES_AT_HEADER,
                                                          later)))
            elif kind == "altered_value":
                items = [dict(item, offer_price=0) for item in offer["items"]]  # all free
                cheaper = dict(offer, items=items, visit=offer["visit"] + rng.randint(1, 9))
                bad.append(genuine._replace(value=codec.encode(cheaper)))
            elif kind == "forged_tombstone":
                tomb = OutRecord(topic, key, None,
                                 [(EXPIRES_AT_HEADER, str(offer["expires_at"]).encode())])
                bad.append(tomb if rng.random() < 0.5 else tomb._replace(
                    headers=[*_headers(tomb), *forger.sign([SignedFields(
                        key, None, offer["expires_at"])])[0]]))
            else:
                other = feed.signer.issue()
                (tomb,) = feed.signed([OutRecord(topic, other.ticket_id.encode(), None, [
                    (EXPIRES_AT_HEADER, str(offer["expires_at"]).encode())])])
                bad.append(tomb._replace(key=key))
        elif kind == "replayed_after_tombstone":
            (first,) = await feed.send([record])
            await feed.tombstone(ticket)
            cases.append(Case(kind, ticket, 410, None))
            bad.append(first)  # the genuine offer again, after its tombstone
        else:  # replayed_older: a genuine older version after the newer one
            older = dict(offer, expires_at=offer["expires_at"] - 30_000_000)
            (old,) = await feed.send([OutRecord(topic, key, codec.encode(older),
                                                offer_headers(older))])
            await feed.send([record])
            cases.append(Case(kind, ticket, 200, offer))
            bad.append(old)
    attacker = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                **client_options(settings, Role.WORKER))
    await attacker.start()
    try:
        futures = [await attacker.send(r.topic, r.value, key=r.key, headers=r.headers)
                   for r in bad]
        for future in futures:
            await future
    finally:
        await attacker.stop()
    return cases, len(bad)


def _refused(edge: Edge) -> float:
    text = httpx.get(edge.metrics_url, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("edge_records_refused_total{"))


def _served_wrongly(edge: Edge, cases: list[Case]) -> list[str]:
    wrong = []
    with httpx.Client(timeout=10) as http:
        for case in cases:
            response = http.get(f"{edge.url}/offers/{case.ticket.token}")
            if response.status_code != case.expect:
                wrong.append(f"{case.kind}: {response.status_code}, not {case.expect}")
            elif case.offer is not None and response.json() != case.offer:
                wrong.append(f"{case.kind}: served {response.json()}, not the worker's offer")
    return wrong


async def test_a_stolen_worker_credential_cannot_get_one_forged_moved_or_replayed_offer_served(
        kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("signed-offers")
    settings = unique_settings(kafka_bootstrap, root)
    await ensure_topics(settings)
    live = Edge(settings, "eu", root).start()
    try:
        async with OfferFeed(settings) as feed:
            cases, attacks = await _attack(settings, feed, random.Random(26))
        assert len(cases) >= 1_000 and {c.kind for c in cases} == set(ATTACKS)
        wait_until(lambda: _refused(live) >= attacks, 60,
                   f"the live edge to refuse all {attacks} attack records")
        assert _refused(live) == attacks
        assert _served_wrongly(live, cases) == []
        # An edge that starts now reads it all while catching up: the same verdicts.
        fresh = Edge(settings, "us", root).start()
        try:
            wait_until(lambda: _refused(fresh) >= attacks, 60,
                       f"the new edge to refuse all {attacks} attack records")
            assert _refused(fresh) == attacks
            assert fresh.readyz()["ready"] is True
            assert _served_wrongly(fresh, cases) == []
        finally:
            fresh.component.stop()
    finally:
        live.component.stop()
