"""Keeping each ticket's newest genuine record last on ``offers``, so compaction keeps it.

An edge skips a record that fails its signature check and never lets an
older record replace a newer one (schemas/offer_versions.py). So an edge
that followed the topic live goes on serving a ticket's newest genuine offer
after a forged, altered or replayed record for that ticket. Compaction keeps
only the last record of each key, though: an edge that bootstraps after it
would find only the bad record, and answer otherwise.

The worker closes that gap. Its expiry consumer (pipeline/expiry.py) reads
every record of its ``offers`` partitions and judges each as an edge would
(``Judge``). When a ticket's last record is not its newest genuine one, the
worker produces that genuine record again, byte for byte, with its
signature headers (``OfferRepairer``). Edges take the copy as a re-send and
change nothing. Compaction then keeps the copy, and a fresh edge agrees
with a live one.

The original must still be in the log when the copy is made: ``offers`` is
created with ``min.compaction.lag.ms`` (setting ``offers_compaction_lag_s``),
so a record that a bad one follows stays readable at least that long. A
worker that is down for longer, while the bad record is the last of its key,
cannot repair the ticket. It says so in its log and counts the ticket in
``worker_offer_repairs_lost_total``.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple

from pipeline.gap_reader import SourceRecord
from runtime.strict_parsing import ascii_int
from schemas.codec import AvroCodec, DecodeError
from schemas.events import EXPIRES_AT_HEADER, LOGIN_ACCEPTED_AT_HEADER
from schemas.offer_signatures import (
    SIG_HEADER,
    SIG_KID_HEADER,
    SIG_PROOF_HEADER,
    OfferVerifier,
    refusal_reason,
)
from schemas.offer_versions import Version, replaces
from schemas.tickets import TICKET_ID

log = logging.getLogger(__name__)

REPAIRS_PER_SWEEP = 1_000  # a flood of bad records is repaired a thousand tickets at a time


class Judge:
    """Whether an edge keeps a record of ``offers``: the edge's checks, from the worker's side.

    ``verdict(key, value, headers)`` is the record's version if an edge would
    keep it (a ticket id for key, readable times, a signature that holds, and
    for an offer a value that decodes), else None. ``why`` holds the reason
    for the last None.
    """

    def __init__(self, verifier: OfferVerifier, codec: AvroCodec,
                 refresh_keys: Callable[[], bool] = lambda: False) -> None:
        self.verifier = verifier
        self.codec = codec
        self.refresh_keys = refresh_keys
        self.why = ""

    def verdict(self, key: bytes | None, value: bytes | None,
                headers: Iterable[tuple[str, bytes]]) -> Version | None:
        if key is None or not TICKET_ID.fullmatch(key):
            return self._no("its key is not a ticket id")
        expires_at = accepted_at = 0
        kid = proof = signature = None
        for name, raw in headers:
            if name == EXPIRES_AT_HEADER or name == LOGIN_ACCEPTED_AT_HEADER:
                try:
                    number = ascii_int(raw, f"header {name}")
                except ValueError as exc:
                    return self._no(str(exc))
                if name == EXPIRES_AT_HEADER:
                    expires_at = number
                else:
                    accepted_at = number
            elif name == SIG_HEADER:
                signature = raw
            elif name == SIG_PROOF_HEADER:
                proof = raw
            elif name == SIG_KID_HEADER:
                kid = raw
        why = self.verifier.check_record(key, value, expires_at, accepted_at, kid, proof,
                                         signature)
        if why is not None and refusal_reason(why) == "untrusted_key" and self.refresh_keys():
            why = self.verifier.check_record(key, value, expires_at, accepted_at, kid, proof,
                                             signature)
        if why is not None:
            return self._no(why)
        if value is None:
            return expires_at, True
        try:
            offer = self.codec.decode(value)
        except DecodeError as exc:
            return self._no(f"it does not decode ({exc})")
        return (expires_at or int(offer["expires_at"])), False

    def _no(self, why: str) -> Version | None:
        self.why = why
        return None


class Newest(NamedTuple):
    """A ticket's newest genuine record: where it is, and its version."""

    partition: int
    offset: int
    version: int      # µs: the offer's expiry, or for a tombstone the expiry it ends
    tombstone: bool


class RepairIndex:
    """Per ticket, its newest genuine record, and the tickets whose last record is not it.
    Pure, no I/O.

    A ticket is tracked from its first genuine record until its version has
    passed: then no edge serves the offer, or any replay of it, and the
    expiry sweep has tombstoned it.
    """

    def __init__(self) -> None:
        self._newest: dict[bytes, Newest] = {}
        self._suspect: set[bytes] = set()
        self._heap: list[tuple[int, bytes]] = []  # (version, ticket): pruning order

    def genuine(self, partition: int, offset: int, ticket: bytes, version: Version) -> bool:
        """A record an edge keeps, of ``version`` (``(µs, is a tombstone)``); whether it is
        now the ticket's newest."""
        held = self._newest.get(ticket)
        if held is None or replaces(version[0], version[1], (held.version, held.tombstone)):
            self._newest[ticket] = Newest(partition, offset, version[0], version[1])
            self._suspect.discard(ticket)
            heapq.heappush(self._heap, (version[0], ticket))
            return True
        self._suspect.add(ticket)  # an older genuine record came last: a replay
        return False

    def refused(self, ticket: bytes) -> None:
        """A record an edge skips came last for ``ticket``."""
        if ticket in self._newest:
            self._suspect.add(ticket)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the tickets of partitions no longer ours."""
        gone = set(partitions)
        self._newest = {t: n for t, n in self._newest.items() if n.partition not in gone}
        self._suspect &= self._newest.keys()
        self._heap = [(v, t) for v, t in self._heap
                      if t in self._newest and self._newest[t].version == v]
        heapq.heapify(self._heap)

    def due(self, now: int, loaded: set[int], limit: int = REPAIRS_PER_SWEEP
            ) -> list[tuple[bytes, Newest]]:
        """Up to ``limit`` tickets to repair, each with its newest genuine record, taken off
        the list (``suspect`` puts one back). Only partitions read to their end are
        decided: until then a later record may yet be the ticket's newest."""
        while self._heap and self._heap[0][0] <= now:
            version, ticket = heapq.heappop(self._heap)
            held = self._newest.get(ticket)
            if held is not None and held.version == version:
                del self._newest[ticket]
                self._suspect.discard(ticket)
        out = []
        for ticket in list(self._suspect):
            held = self._newest[ticket]
            if held.partition not in loaded:
                continue
            self._suspect.discard(ticket)
            out.append((ticket, held))
            if len(out) >= limit:
                break
        return out

    def suspect(self, ticket: bytes) -> None:
        """Try ``ticket`` again at the next ``due`` (its repair could not be made now)."""
        if ticket in self._newest:
            self._suspect.add(ticket)

    def forget(self, ticket: bytes) -> None:
        """Stop tracking ``ticket`` (its newest genuine record is gone from the log)."""
        self._newest.pop(ticket, None)
        self._suspect.discard(ticket)

    @property
    def waiting(self) -> int:
        """Tickets whose last record is not their newest genuine one."""
        return len(self._suspect)

    def __len__(self) -> int:
        return len(self._newest)


ReadOffsets = Callable[[int, Sequence[int]], Awaitable[dict[int, SourceRecord]]]
"""``read(partition, offsets)``: the records still at those offsets, by offset."""
Resend = Callable[[list[SourceRecord]], Awaitable[None]]
"""``resend(records)``: produce them to ``offers`` unchanged; returns once acknowledged."""


class OfferRepairer:
    """Judges the records the expiry consumer reads, and repairs tickets whose last record
    an edge would not keep, or keep over an older one (see the module docstring).

    ``read`` fetches records by offset and ``resend`` produces them as they
    are. ``on_repaired(n)`` and ``on_lost(n)`` count.
    """

    def __init__(self, judge: Judge, read: ReadOffsets, resend: Resend,
                 on_repaired: Callable[[int], Any] = lambda n: None,
                 on_lost: Callable[[int], Any] = lambda n: None) -> None:
        self.judge = judge
        self.read = read
        self.resend = resend
        self.on_repaired = on_repaired
        self.on_lost = on_lost
        self.index = RepairIndex()
        self.refused = 0
        self._refused_since = 0
        self._example = ""

    def seen(self, partition: int, offset: int, key: bytes | None, value: bytes | None,
             headers: Iterable[tuple[str, bytes]]) -> Version | None:
        """Judge one record read from ``offers`` and note it; its version if it is now its
        ticket's newest genuine record, else None (refused, or older than the newest)."""
        version = self.judge.verdict(key, value, headers)
        if key is None:
            return None
        if version is None:
            self.refused += 1
            self._refused_since += 1
            if not self._example:
                self._example = f"offers[{partition}]@{offset}: {self.judge.why}"
            self.index.refused(key)
            return None
        return version if self.index.genuine(partition, offset, key, version) else None

    def revoke(self, partitions: Iterable[int]) -> None:
        self.index.revoke(partitions)

    async def repair(self, now: int, loaded: set[int]) -> int:
        """Produce again the newest genuine record of each ticket due (acknowledged before this
        returns); how many. A read that fails leaves the tickets for the next call."""
        if self._refused_since:  # edges log each with its offset; here, one line per sweep
            log.warning("%d records of offers read since the last sweep are not ones an edge "
                        "keeps, the first %s", self._refused_since, self._example)
            self._refused_since, self._example = 0, ""
        self.judge.refresh_keys()  # a retired key's records are no longer genuine
        due = self.index.due(now, loaded)
        by_partition: dict[int, list[tuple[bytes, Newest]]] = {}
        for ticket, held in due:
            by_partition.setdefault(held.partition, []).append((ticket, held))
        records: list[SourceRecord] = []
        lost = 0
        for partition, wanted in sorted(by_partition.items()):
            try:
                found = await self.read(partition, [held.offset for _, held in wanted])
            except Exception as exc:  # the broker away, say: try again at the next sweep
                log.warning("offers[%d]: could not read %d records to repair (%r); trying "
                            "again at the next sweep", partition, len(wanted), exc)
                for ticket, _ in wanted:
                    self.index.suspect(ticket)
                continue
            for ticket, held in wanted:
                record = found.get(held.offset)
                if record is None or record.key != ticket:
                    lost += 1
                    self.index.forget(ticket)
                    log.error("offers[%d]@%d, the newest genuine record of ticket %s, is gone "
                              "(compacted before it was repaired): edges that bootstrap now "
                              "may answer it otherwise than live ones", partition, held.offset,
                              ticket.decode(errors="replace"))
                    continue
                records.append(record)
        if records:
            await self.resend(records)
            log.warning("repaired %d tickets of offers whose last record an edge would not "
                        "keep: their newest genuine records are produced again", len(records))
            self.on_repaired(len(records))
        if lost:
            self.on_lost(lost)
        return len(records)
