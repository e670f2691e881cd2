"""Turning a stored offer into the JSON the edge serves."""

from __future__ import annotations

import orjson

from edge.store import StoredOffer
from schemas.codec import DecodeError, offer_codec


class CorruptOffer(RuntimeError):
    """A stored record that does not decode (the node logs it and answers 502)."""


def avro_to_json(payload: bytes) -> bytes:
    """The JSON an edge serves for an Avro offer record; DecodeError if it is not one."""
    return orjson.dumps(offer_codec().decode(payload))


def offer_json(stored: StoredOffer) -> bytes:
    if stored.is_json:
        return stored.payload
    try:
        return avro_to_json(stored.payload)
    except DecodeError as exc:
        raise CorruptOffer(str(exc)) from exc
