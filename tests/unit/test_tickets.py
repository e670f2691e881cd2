"""Tickets: unguessable, signed, rotating keys, and three distinct failures."""

from __future__ import annotations

import base64
import logging
import os

import pytest

from pipeline.tickets import (TicketExpired, TicketForged, TicketMalformed, TicketSigner, _b64d,
                              _b64e, parse_keys, signer_from_settings)

KEY = "k1:" + "a" * 32


def test_issue_then_verify() -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=900)
    ticket = signer.issue(now_ms=1_000_000)
    assert ticket.expires_at_ms - ticket.issued_at_ms == 900_000
    verified = signer.verify(ticket.token, now_ms=1_000_001)
    assert verified == ticket
    assert len(ticket.ticket_id) == 22  # 128 random bits, base64url


def test_ticket_ids_do_not_repeat() -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=900)
    assert len({signer.issue().ticket_id for _ in range(2000)}) == 2000


def test_expired_ticket() -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=10)
    ticket = signer.issue(now_ms=0)
    with pytest.raises(TicketExpired):
        signer.verify(ticket.token, now_ms=10_000)


@pytest.mark.parametrize("position", [5, 30, -3])
def test_tampered_ticket_is_forged(position: int) -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=900)
    token = signer.issue().token
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    with pytest.raises((TicketForged, TicketMalformed)):
        signer.verify("".join(chars))


def test_ticket_signed_with_another_secret_is_forged() -> None:
    other = TicketSigner.from_spec("k1:" + "b" * 32, ttl_s=900)
    with pytest.raises(TicketForged):
        TicketSigner.from_spec(KEY, ttl_s=900).verify(other.issue().token)


def test_forgery_is_reported_before_expiry() -> None:
    other = TicketSigner.from_spec("k1:" + "b" * 32, ttl_s=1)
    token = other.issue(now_ms=0).token
    with pytest.raises(TicketForged):
        TicketSigner.from_spec(KEY, ttl_s=900).verify(token, now_ms=10**12)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "k1.!!!.xx", "x" * 500,
                                   "k1.AAAA.BBBB"])
def test_malformed_tickets(token: str) -> None:
    with pytest.raises(TicketMalformed):
        TicketSigner.from_spec(KEY, ttl_s=900).verify(token)


def test_key_rotation_old_tickets_still_verify() -> None:
    old = TicketSigner.from_spec(KEY, ttl_s=900)
    ticket = old.issue()
    rotated = TicketSigner.from_spec("k2:" + "c" * 32 + "," + KEY, ttl_s=900)
    assert rotated.verify(ticket.token).kid == "k1"
    assert rotated.issue().kid == "k2"
    retired = TicketSigner.from_spec("k2:" + "c" * 32, ttl_s=900)
    with pytest.raises(TicketForged):
        retired.verify(ticket.token)


@pytest.mark.parametrize("spec", ["", "nokid", "k1:short", "bad kid:" + "a" * 20,
                                  KEY + "," + KEY])
def test_bad_key_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_keys(spec)


def test_development_secret_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    dev = "dev:" + "d" * 32
    with caplog.at_level(logging.WARNING):
        signer_from_settings(dev, 900, dev_default=dev)
    assert "INSECURE development secret" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        signer_from_settings(KEY, 900, dev_default=dev)
    assert "INSECURE" not in caplog.text


def test_base64url_helpers_match_the_standard_library() -> None:
    for size in range(0, 40):
        raw = os.urandom(size)
        text = _b64e(raw)
        assert text == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        assert _b64d(text) == raw
