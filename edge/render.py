"""Turning a stored offer into the JSON the edge serves, checking its signature first if it
was stored unchecked (edge/unverified.py)."""

from __future__ import annotations

import orjson

from edge import unverified
from edge.store import StoredOffer
from schemas.codec import DecodeError, offer_codec
from schemas.offer_signatures import OfferVerifier


class CorruptOffer(RuntimeError):
    """A stored record that does not decode (the node logs it and answers 502)."""


class Refused(ValueError):
    """A stored offer whose signature does not hold: it is deleted and never served."""


def avro_to_json(payload: bytes) -> bytes:
    """The JSON an edge serves for an Avro offer record; DecodeError if it is not one."""
    return orjson.dumps(offer_codec().decode(payload))


class Renderer:
    """Renders stored entries, checking unverified ones with ``verifier`` (None: the node
    trusts offers, ``offer_signing=off``, and takes their value as it is)."""

    def __init__(self, verifier: OfferVerifier | None) -> None:
        self.verifier = verifier

    def check(self, ticket_id: bytes, expires_at: int, payload: bytes) -> str | None:
        """None if an unverified payload's signature holds for ``ticket_id``, else why not
        (the ``verify`` of ``OfferStore.apply``)."""
        if self.verifier is None:
            return None
        try:
            parts = unverified.unpack(payload)
        except ValueError as exc:
            return str(exc)
        return self.verifier.check_record(ticket_id, parts.value, expires_at, parts.accepted_at,
                                          parts.kid, parts.proof, parts.signature)

    def avro(self, ticket_id: bytes, stored: StoredOffer) -> bytes:
        """An Avro entry's JSON, checked first if unverified.

        Raises Refused (its signature does not hold) or DecodeError (not an
        offer): both ValueError, as ``OfferStore.render_slice`` expects.
        """
        payload = stored.payload
        if stored.unverified:
            why = self.check(ticket_id, stored.expires_at, payload)
            if why is not None:
                raise Refused(why)
            payload = unverified.unpack(payload).value
        return avro_to_json(payload)

    def json(self, ticket_id: bytes, stored: StoredOffer) -> bytes:
        """The JSON to serve for a stored offer.

        Raises Refused (its signature does not hold) or CorruptOffer (it does
        not decode).
        """
        if stored.is_json:
            return stored.payload
        try:
            return self.avro(ticket_id, stored)
        except DecodeError as exc:
            raise CorruptOffer(str(exc)) from exc
