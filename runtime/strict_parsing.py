"""Parsing external text exactly as the contract says, and no more.

Python's own parsers accept more than our contracts: ``int`` takes
``" 12"``, ``"1_2"`` and any Unicode digit, ``float`` takes ``"nan"``,
``"inf"`` and ``"1e3"``, and ``$`` in a regular expression matches before a
trailing newline. Every number and token that comes from a request, a header
or a record goes through these functions instead (or ``re.fullmatch``).
"""

from __future__ import annotations

import re

_ASCII_INT = re.compile(r"[0-9]{1,19}")
_DECIMAL = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")


def ascii_int(text: str | bytes, what: str = "value") -> int:
    """A non-negative integer of 1-19 ASCII digits; ValueError otherwise."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{what} is not ASCII digits") from None
    if not _ASCII_INT.fullmatch(text):
        raise ValueError(f"{what} must be 1 to 19 ASCII digits, got {text[:32]!r}")
    return int(text)


def decimal(text: str, what: str = "value") -> float:
    """A non-negative decimal like ``12`` or ``0.25`` (ASCII, no sign, no exponent)."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{what} must be a number like 5 or 2.5, got {text[:32]!r}")
    return float(text)
