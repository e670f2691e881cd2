"""Opaque, signed tickets: what the user holds between login and offer.

A ticket is ``<kid>.<payload>.<mac>`` (base64url, no padding). The payload is
a version byte, 16 random bytes (the ticket id, and the key of the offer on
Kafka) and the issue and expiry times in milliseconds. The MAC is
HMAC-SHA256 over ``<kid>.<payload>`` under the key named by ``kid``, so keys
rotate by adding a new key in front and keeping the old ones to verify.

An edge node verifies a ticket without touching storage: malformed, forged
and expired are told apart, and an unexpired valid ticket whose offer is
missing is known to be pending. A ticket whose lifetime exceeds the TTL, or
that is issued in the future beyond the clock skew, is refused as forged:
only a holder of the key can make one. This module must not import Faust:
the edge imports it.
"""

from __future__ import annotations

import binascii
import hmac
import logging
import re
import secrets
import struct
import time
from collections.abc import Callable
from typing import NamedTuple

from runtime.settings import Settings
from runtime.ticket_secret import key_reloader, ticket_secret

log = logging.getLogger(__name__)

VERSION = 1
_PAYLOAD = struct.Struct(">B16sQQ")
TICKET_ID = re.compile(rb"[A-Za-z0-9_-]{22}")
"""A ticket id as ``offers`` keys carry it: 16 bytes in base64url, no padding."""
_KID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
MAX_TICKET_LEN = 160
_CANONICAL_LAST = frozenset("AEIMQUYcgkosw048")
# A well-formed ticket exactly (the edge's OpenAPI publishes it): a kid, the
# 33-byte payload (version 1 first) and the 32-byte MAC, canonical base64url
# (the MAC's last character carries two zero bits).
TICKET_PATTERN = ("[A-Za-z0-9_-]{1,16}\\.A[Q-Za-f][A-Za-z0-9_-]{42}"
                  "\\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
MIN_SECRET_LEN = 16


class TicketError(ValueError):
    """A ticket that must not be honoured; subclasses say why."""

    status_code = 400


class TicketMalformed(TicketError):
    status_code = 400


class TicketForged(TicketError):
    status_code = 401


class TicketExpired(TicketError):
    status_code = 410


# base64url by hand on binascii: the same result as base64.urlsafe_b64encode /
# _b64decode without their layers of Python calls (every login and every
# lookup goes through here).
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64e(raw: bytes) -> str:
    encoded = binascii.b2a_base64(raw, newline=False)
    return encoded.translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    """Decode base64url; callers check the alphabet first (binascii skips stray characters)."""
    padded = text.encode("ascii").translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4)
    return binascii.a2b_base64(padded)


class Ticket(NamedTuple):
    """A verified ticket (a named tuple: one is built per login and per lookup)."""

    token: str
    ticket_id: str
    kid: str
    issued_at_ms: int
    expires_at_ms: int

    @property
    def issued_at_us(self) -> int:
        return self.issued_at_ms * 1000

    @property
    def expires_at_us(self) -> int:
        return self.expires_at_ms * 1000


def parse_keys(spec: str) -> dict[str, bytes]:
    """``kid:secret[,kid:secret...]`` into an ordered mapping; the first key signs.

    Raises ValueError: a part is not ``kid:secret``, a kid is repeated, a secret is short.
    """
    pairs = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        kid, sep, secret = part.partition(":")
        if not sep:
            raise ValueError(f"ticket key {kid!r}: expected kid:secret")
        pairs.append((kid, secret))
    return checked_keys(pairs)


def checked_keys(pairs: list[tuple[str, str]]) -> dict[str, bytes]:
    """``(kid, secret)`` pairs, the signing key first, checked, as the signer holds them.

    Raises ValueError as ``parse_keys``.
    """
    keys: dict[str, bytes] = {}
    for kid, secret in pairs:
        if not _KID.fullmatch(kid):
            raise ValueError(f"ticket key {kid!r}: expected kid:secret with kid of "
                             "[A-Za-z0-9_-]{1,16}")
        if len(secret) < MIN_SECRET_LEN:
            raise ValueError(f"ticket key {kid!r}: secret must be at least {MIN_SECRET_LEN} characters")
        if kid in keys:
            raise ValueError(f"ticket key {kid!r} given twice")
        keys[kid] = secret.encode()
    if not keys:
        raise ValueError("no ticket keys configured")
    return keys


class TicketSigner:
    """Issues and verifies tickets under a set of keys."""

    def __init__(self, keys: dict[str, bytes], ttl_s: int, clock_skew_s: float = 5.0,
                 reload: Callable[[], dict[str, str] | None] | None = None) -> None:
        """``ttl_s``: the lifetime of issued tickets, and the longest one honoured;
        ``clock_skew_s``: how far in the future an issue time may be (clocks differ);
        ``reload``: asked before each issue and check, gives new keys (signing key first)
        when they changed (runtime/ticket_secret.py ``key_reloader``), else None."""
        if not keys:
            raise ValueError("at least one key is needed")
        self._keys = dict(keys)
        self._signing_kid = next(iter(self._keys))
        self._reload = reload
        self.ttl_ms = ttl_s * 1000
        self.skew_ms = int(clock_skew_s * 1000)

    def __repr__(self) -> str:  # never the keys
        return f"TicketSigner(kids={list(self._keys)}, ttl_ms={self.ttl_ms})"

    @classmethod
    def from_spec(cls, spec: str, ttl_s: int, clock_skew_s: float = 5.0) -> TicketSigner:
        return cls(parse_keys(spec), ttl_s, clock_skew_s)

    def _refresh(self) -> None:
        if self._reload is None:
            return
        fresh = self._reload()
        if fresh is None:
            return
        try:
            keys = checked_keys(list(fresh.items()))
        except ValueError as exc:  # keep signing with the keys in use; say why, loudly
            log.error("the new ticket keys are refused, the old ones stay: %s", exc)
            return
        self._keys, self._signing_kid = keys, next(iter(keys))
        log.info("ticket keys now %s, signing with %s", list(keys), self._signing_kid)

    @property
    def signing_kid(self) -> str:
        self._refresh()
        return self._signing_kid

    def _mac(self, key: bytes, signed: str | bytes) -> bytes:
        return hmac.digest(key, signed.encode("ascii") if isinstance(signed, str) else signed,
                           "sha256")

    def ticket_id_for(self, user_id: str, idempotency_key: str) -> bytes:
        """The ticket id of a login retried under ``idempotency_key``: 16 bytes.

        HMAC-SHA256 of the user id and the key under the signing key, so the
        same user and key give the same ticket id on any origin, with no
        state, and nobody without the secret can predict one. Raises nothing.
        """
        self._refresh()
        message = b"idempotency\0" + user_id.encode() + b"\0" + idempotency_key.encode()
        return self._mac(self._keys[self._signing_kid], message)[:16]

    def issue(self, now_ms: int | None = None, raw_id: bytes | None = None) -> Ticket:
        """A new ticket; ``raw_id`` (16 bytes) fixes its id, else it is random."""
        self._refresh()
        issued = int(time.time() * 1000) if now_ms is None else now_ms
        if raw_id is None:
            raw_id = secrets.token_bytes(16)
        elif len(raw_id) != 16:
            raise ValueError("a ticket id is 16 bytes")
        payload = _b64e(_PAYLOAD.pack(VERSION, raw_id, issued, issued + self.ttl_ms))
        signed = f"{self._signing_kid}.{payload}"
        token = f"{signed}.{_b64e(self._mac(self._keys[self._signing_kid], signed))}"
        return Ticket(token, _b64e(raw_id), self._signing_kid, issued, issued + self.ttl_ms)

    def verify(self, token: str, now_ms: int | None = None) -> Ticket:
        """The ticket, or TicketMalformed / TicketForged / TicketExpired."""
        if not isinstance(token, str) or len(token) > MAX_TICKET_LEN:
            raise TicketMalformed("ticket is not a string of a sensible length")
        self._refresh()
        parts = token.split(".")
        if len(parts) != 3:
            raise TicketMalformed("ticket must have three dot-separated parts")
        kid, payload_b64, mac_b64 = parts
        if not (_KID.fullmatch(kid) and _B64.fullmatch(payload_b64)
                and _B64.fullmatch(mac_b64)):
            raise TicketMalformed("ticket has characters outside base64url")
        try:
            payload = _b64d(payload_b64)
            mac = _b64d(mac_b64)
        except ValueError as exc:
            raise TicketMalformed("ticket is not valid base64url") from exc
        if len(payload) != _PAYLOAD.size or len(mac) != 32:
            raise TicketMalformed("ticket has the wrong length")
        # 33 payload bytes fill 44 characters exactly; the MAC's 32 bytes leave two
        # unused bits in its last character, which must be zero (canonical form).
        if len(payload_b64) != 44 or mac_b64[-1] not in _CANONICAL_LAST:
            raise TicketMalformed("ticket is not canonical base64url")
        version, raw_id, issued, expires = _PAYLOAD.unpack(payload)
        if version != VERSION:
            raise TicketMalformed(f"unknown ticket version {version}")
        key = self._keys.get(kid)
        # Compare against a MAC even for an unknown kid, so timing does not
        # tell which key ids exist.
        expected = self._mac(key if key is not None else b"\0" * 32, f"{kid}.{payload_b64}")
        if not hmac.compare_digest(expected, mac) or key is None:
            raise TicketForged("ticket signature does not verify")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        if expires - issued > self.ttl_ms or expires <= issued:
            raise TicketForged("ticket lifetime is not within the configured TTL")
        if issued > now + self.skew_ms:
            raise TicketForged("ticket is issued in the future")
        if now >= expires:
            raise TicketExpired("ticket has expired")
        return Ticket(token, _b64e(raw_id), kid, issued, expires)


def signer_from_settings(settings: Settings) -> TicketSigner:
    """The signer of a component: the configured key, else the local home's own
    (runtime/ticket_secret.py), the TTL and the clock skew from the settings."""
    reload = key_reloader(settings)
    first = reload() if reload is not None else None  # the keys of now, and primes it
    keys = checked_keys(list(first.items())) if first else parse_keys(ticket_secret(settings))
    return TicketSigner(keys, settings.ticket_ttl_s, settings.ticket_clock_skew_s, reload=reload)
