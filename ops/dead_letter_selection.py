"""Which dead letters a ``positioning dlq`` command means: error types, a time window, offsets.

The command line's words are parsed here, with no Kafka involved, so the
rules are tested alone:

- a time (``--since``, ``--until``) is ISO-8601 (``2025-05-01T12:00:00Z``;
  no zone means UTC) or a time ago (``90s``, ``10m``, ``2h``, ``3d``);
- an offset range (``--offsets``) is ``P:A-B`` (partition P, offsets A to B
  inclusive), ``P:A`` (one record), ``P:A-`` (A to the end) or ``P`` (the
  whole partition), partition and offsets of the dead-letter topic.

Times are µs since the Unix epoch, like every time in the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

_AGO = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RANGE = re.compile(r"(\d+)(?::(\d+)(-(\d*))?)?")


class BadSelection(ValueError):
    """A time or an offset range the command line cannot read; the message says the syntax."""


def parse_time(text: str, now_us: int) -> int:
    """``text`` as µs since the epoch: ISO-8601 (no zone: UTC) or a time ago (``10m``).

    Raises:
        BadSelection: neither form.
    """
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return now_us - int(ago.group(1)) * _UNIT_S[ago.group(2)] * 1_000_000
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadSelection(
            f"{text!r} is not a time: give ISO-8601 (2025-05-01T12:00:00Z, no zone means "
            "UTC) or a time ago (90s, 10m, 2h, 3d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def iso_utc(at_us: int) -> str:
    """µs since the epoch as ISO-8601 UTC with a ``Z``, to the millisecond (out of datetime's
    range: the number and ``µs``)."""
    try:
        when = datetime.fromtimestamp(at_us / 1_000_000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{at_us}µs"
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class OffsetRange:
    """Offsets ``first`` to ``last`` (inclusive; None: to the end) of one partition."""

    partition: int
    first: int = 0
    last: int | None = None

    def __contains__(self, where: tuple[int, int]) -> bool:
        partition, offset = where
        return (partition == self.partition and offset >= self.first
                and (self.last is None or offset <= self.last))

    def __str__(self) -> str:
        if self.first == 0 and self.last is None:
            return str(self.partition)
        if self.last == self.first:
            return f"{self.partition}:{self.first}"
        return f"{self.partition}:{self.first}-{'' if self.last is None else self.last}"


def parse_offsets(text: str) -> OffsetRange:
    """``P:A-B``, ``P:A``, ``P:A-`` or ``P`` as an ``OffsetRange``.

    Raises:
        BadSelection: another form, or a range that ends before it starts.
    """
    match = _RANGE.fullmatch(text.strip())
    if not match:
        raise BadSelection(
            f"{text!r} is not an offset range: give P:A-B (partition P, offsets A to B), "
            "P:A (one record), P:A- (A to the end) or P (the whole partition)")
    partition = int(match.group(1))
    if match.group(2) is None:
        return OffsetRange(partition)
    first = int(match.group(2))
    if match.group(3) is None:
        return OffsetRange(partition, first, first)
    last = int(match.group(4)) if match.group(4) else None
    if last is not None and last < first:
        raise BadSelection(f"{text!r}: the range ends before it starts")
    return OffsetRange(partition, first, last)


@dataclass(frozen=True)
class Selection:
    """Dead letters by error type, time (µs, inclusive) and offsets; empty parts match all.

    A record matches when its error type is one of ``types``, its time lies
    within ``since``..``until``, and it sits in one of ``ranges``.
    """

    types: frozenset[str] = frozenset()
    since_us: int | None = None
    until_us: int | None = None
    ranges: tuple[OffsetRange, ...] = ()

    @classmethod
    def of(cls, types: Iterable[str] = (), since_us: int | None = None,
           until_us: int | None = None, ranges: Iterable[OffsetRange] = ()) -> Selection:
        return cls(frozenset(types), since_us, until_us, tuple(ranges))

    @property
    def everything(self) -> bool:
        """Whether this selection matches every record."""
        return (not self.types and self.since_us is None and self.until_us is None
                and not self.ranges)

    def matches(self, error_type: str, at_us: int, partition: int, offset: int) -> bool:
        if self.types and error_type not in self.types:
            return False
        if self.since_us is not None and at_us < self.since_us:
            return False
        if self.until_us is not None and at_us > self.until_us:
            return False
        return not self.ranges or any((partition, offset) in r for r in self.ranges)
