"""Turning a stored offer into the JSON the edge serves."""

from __future__ import annotations

import orjson

from edge.store import StoredOffer
from schemas.codec import DecodeError, offer_codec


class CorruptOffer(RuntimeError):
    """A stored record that does not decode (the node logs it and answers 502)."""


def offer_json(stored: StoredOffer) -> bytes:
    try:
        return orjson.dumps(offer_codec().decode(stored.payload))
    except DecodeError as exc:
        raise CorruptOffer(str(exc)) from exc
