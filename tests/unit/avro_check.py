"""Test helper: an offer must encode with the shipped Avro schema."""

from __future__ import annotations

from typing import Any

from schemas.codec import offer_codec


def assert_valid_offer(offer: dict[str, Any]) -> None:
    assert offer_codec().decode(offer_codec().encode(offer)) == offer
