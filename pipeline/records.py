"""What the worker produces: one record, as it goes to the producer."""

from __future__ import annotations

from typing import NamedTuple


class OutRecord(NamedTuple):
    """A record to produce: topic, key, value (None: a tombstone) and headers."""

    topic: str
    key: bytes
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
