"""The worker's repairs of ``offers``: which tickets it repairs, with which record, and when."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.gap_reader import SourceRecord
from pipeline.offer_repair import Judge, OfferRepairer, RepairIndex
from schemas.codec import HEADER_LEN, offer_codec
from schemas.events import EXPIRES_AT_HEADER, LOGIN_ACCEPTED_AT_HEADER
from schemas.offer_signatures import OfferSigner, OfferVerifier, SignedFields
from schemas.tickets import TicketSigner
from tests.offers_feed import offer_for

KEY = Ed25519PrivateKey.generate()
FORGER = Ed25519PrivateKey.generate()
_TICKET = TicketSigner.from_spec("test:" + "s" * 32, 900).issue()
TICKET = _TICKET.ticket_id.encode()
OTHER = TicketSigner.from_spec("test:" + "s" * 32, 900).issue().ticket_id.encode()
NOW = int(time.time() * 1e6)


def _offer(expires_at: int) -> bytes:
    return offer_codec().encode(dict(offer_for(_TICKET), expires_at=expires_at))


def _record(offset: int, expires_at: int, *, tombstone: bool = False, key: bytes = TICKET,
            signer: Ed25519PrivateKey = KEY, value: bytes | None = None) -> SourceRecord:
    # A forger's offer differs from the genuine one: the very same fields are authentic.
    bump = 0 if signer is KEY else 1_000
    body = None if tombstone else (value if value is not None else _offer(expires_at + bump))
    headers = [(EXPIRES_AT_HEADER, str(expires_at).encode())]
    if body is not None:
        headers.append((LOGIN_ACCEPTED_AT_HEADER, str(NOW).encode()))
    fields = SignedFields(key, body, expires_at, NOW if body is not None else 0)
    sig = OfferSigner("offers", "k1", signer).sign([fields])[0]
    return SourceRecord("offers", 0, offset, key, body, [*headers, *sig])


def _judge() -> Judge:
    public = KEY.public_key()
    return Judge(OfferVerifier("offers", lambda kid: public if kid == "k1" else None),
                 offer_codec())


def test_the_judge_keeps_what_an_edge_keeps_and_nothing_else() -> None:
    judge = _judge()
    later = NOW + 60_000_000
    assert judge.verdict(TICKET, *_record(0, later)[4:]) == (later, False)
    assert judge.verdict(TICKET, *_record(0, later, tombstone=True)[4:]) == (later, True)
    forged = _record(0, later, signer=FORGER)
    assert judge.verdict(TICKET, forged.value, forged.headers) is None
    assert "signature" in judge.why
    moved = _record(0, later)
    assert judge.verdict(OTHER, moved.value, moved.headers) is None
    assert judge.verdict(TICKET, moved.value, []) is None and judge.why == "unsigned"
    corrupt = _record(0, later, value=_offer(later)[:HEADER_LEN] + b"\xff" * 40)
    assert judge.verdict(TICKET, corrupt.value, corrupt.headers) is None
    assert "decode" in judge.why
    assert judge.verdict(b"not a ticket", moved.value, moved.headers) is None


def test_a_ticket_whose_last_record_is_bad_or_older_is_due_with_its_newest_genuine_one() -> None:
    index = RepairIndex()
    v1, v2 = NOW + 10_000_000, NOW + 20_000_000
    assert index.genuine(0, 5, TICKET, (v1, False))
    assert index.due(NOW, {0}) == []           # its last record is its newest
    index.refused(TICKET)                      # a forged record came after it
    assert index.due(NOW, set()) == []         # partition 0 not read to its end yet
    (ticket, held), = index.due(NOW, {0})
    assert (ticket, held.offset, held.version) == (TICKET, 5, v1)
    assert index.due(NOW, {0}) == []           # taken off the list
    assert index.genuine(0, 9, TICKET, (v2, False))
    assert not index.genuine(0, 10, TICKET, (v1, False))  # a replay of the older one
    (_, held), = index.due(NOW, {0})
    assert held.offset == 9
    assert index.genuine(0, 11, TICKET, (v2, False))      # the repair itself: a re-send
    assert index.due(NOW, {0}) == []


def test_a_revoked_ticket_is_repaired_with_its_tombstone_and_forgotten_once_it_expired() -> None:
    index = RepairIndex()
    v1 = NOW + 10_000_000
    index.genuine(0, 1, TICKET, (v1, False))
    index.genuine(0, 2, TICKET, (v1, True))     # revoked
    assert not index.genuine(0, 3, TICKET, (v1, False))  # the offer replayed after it
    (_, held), = index.due(NOW, {0})
    assert (held.offset, held.tombstone) == (2, True)
    index.refused(TICKET)
    assert index.due(v1 + 1, {0}) == []          # past its version: nothing to protect
    assert len(index) == 0


def test_a_record_never_genuine_is_not_tracked_and_revoked_partitions_are_forgotten() -> None:
    index = RepairIndex()
    index.refused(TICKET)
    assert index.due(NOW, {0}) == [] and len(index) == 0
    index.genuine(3, 1, TICKET, (NOW + 10_000_000, False))
    index.refused(TICKET)
    index.revoke([3])
    assert index.due(NOW, {3}) == [] and len(index) == 0


def test_the_repairer_resends_the_genuine_record_byte_for_byte_and_counts_what_is_gone() -> None:
    v1 = NOW + 10_000_000
    log = [_record(0, v1), _record(1, v1, signer=FORGER),
           _record(2, v1, key=OTHER), _record(3, v1, key=OTHER, signer=FORGER)]
    present = {0: log[0]}  # offset 2 was compacted away
    sent: list[SourceRecord] = []
    lost: list[int] = []

    async def read(partition: int, offsets: Sequence[int]) -> dict[int, SourceRecord]:
        return {o: present[o] for o in offsets if o in present}

    async def resend(records: list[SourceRecord]) -> None:
        sent.extend(records)

    repairer = OfferRepairer(_judge(), read, resend, on_lost=lost.append)
    versions = [repairer.seen(0, r.offset, r.key, r.value, r.headers) for r in log]
    assert versions == [(v1, False), None, (v1, False), None]
    assert asyncio.run(repairer.repair(NOW, {0})) == 1
    assert sent == [log[0]] and lost == [1]
    assert repairer.seen(0, 4, sent[0].key, sent[0].value, sent[0].headers) == (v1, False)
    assert asyncio.run(repairer.repair(NOW, {0})) == 0


def test_a_failed_read_leaves_the_ticket_for_the_next_sweep() -> None:
    v1 = NOW + 10_000_000
    calls = []

    async def read(partition: int, offsets: Sequence[int]) -> dict[int, SourceRecord]:
        calls.append(offsets)
        if len(calls) == 1:
            raise OSError("broker away")
        return {0: good}

    async def resend(records: list[SourceRecord]) -> None:
        pass

    good = _record(0, v1)
    repairer = OfferRepairer(_judge(), read, resend)
    for r in (good, _record(1, v1, signer=FORGER)):
        repairer.seen(0, r.offset, r.key, r.value, r.headers)
    assert asyncio.run(repairer.repair(NOW, {0})) == 0
    assert asyncio.run(repairer.repair(NOW, {0})) == 1
