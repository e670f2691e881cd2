"""Turning a stored offer into the JSON the edge serves, checking its signature first if it
was stored unchecked (edge/unverified.py)."""

from __future__ import annotations

import orjson

from edge import unverified
from edge.store import StoredOffer
from schemas.codec import DecodeError, offer_codec
from schemas.offer_signatures import OfferVerifier

UNDECODABLE = "does not decode"


class Refused(ValueError):
    """A stored offer that is not to be served: its signature does not hold, or it does not
    decode (the message then starts with ``UNDECODABLE``). It is deleted, as a node that
    checked it on arrival would never have stored it, and answered as absent."""


def undecodable(why: str) -> bool:
    """Whether a refusal's reason is that the offer does not decode (not its signature)."""
    return why.startswith(UNDECODABLE)


def avro_to_json(payload: bytes) -> bytes:
    """The JSON an edge serves for an Avro offer record; DecodeError if it is not one."""
    return orjson.dumps(offer_codec().decode(payload))


class Renderer:
    """Renders stored entries, checking unverified ones with ``verifier`` (None: the node
    trusts offers, ``offer_signing=off``, and takes their value as it is)."""

    def __init__(self, verifier: OfferVerifier | None) -> None:
        self.verifier = verifier

    def _signature(self, ticket_id: bytes, expires_at: int, payload: bytes
                   ) -> tuple[str | None, bytes]:
        """Why an unverified payload's signature fails (None: it holds), and its value."""
        try:
            parts = unverified.unpack(payload)
        except ValueError as exc:
            return str(exc), b""
        if self.verifier is None:
            return None, parts.value
        return self.verifier.check_record(ticket_id, parts.value, expires_at, parts.accepted_at,
                                          parts.kid, parts.proof, parts.signature), parts.value

    def check(self, ticket_id: bytes, expires_at: int, payload: bytes) -> str | None:
        """None if an unverified payload's signature holds for ``ticket_id`` and its offer
        decodes, else why not: what a live node checks on arrival (the ``verify`` of
        ``OfferStore.apply``)."""
        why, value = self._signature(ticket_id, expires_at, payload)
        if why is not None:
            return why
        try:
            offer_codec().decode(value)
        except DecodeError as exc:
            return f"{UNDECODABLE} ({exc})"
        return None

    def avro(self, ticket_id: bytes, stored: StoredOffer) -> bytes:
        """An Avro entry's JSON, checked first if unverified.

        Raises Refused (its signature does not hold) or DecodeError (not an
        offer): both ValueError, as ``OfferStore.render_slice`` expects.
        """
        payload = stored.payload
        if stored.unverified:
            why, payload = self._signature(ticket_id, stored.expires_at, payload)
            if why is not None:
                raise Refused(why)
        return avro_to_json(payload)

    def json(self, ticket_id: bytes, stored: StoredOffer) -> bytes:
        """The JSON to serve for a stored offer.

        Raises Refused: its signature does not hold, or it does not decode (a
        record a live node would have skipped, or a damaged store).
        """
        if stored.is_json:
            return stored.payload
        try:
            return self.avro(ticket_id, stored)
        except DecodeError as exc:
            raise Refused(f"{UNDECODABLE} ({exc})") from exc
