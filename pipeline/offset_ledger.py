"""Which offsets of ``logins`` are safe to commit: the worker's own record, not Faust's.

Faust computes the offset it commits from the events the agent acked, and
three of its rules can move the committed offset past a login whose offer
was never acknowledged (faust-streaming 0.15, ``Consumer._new_offset`` and
``_drain_messages``; see docs/decisions/0001-own-the-commit.md):

- an ack that arrives before the ack of the offset right after the last
  commit is committed over it (the gap test is ``min(acked) - committed > 1``,
  one too lenient), and with no commit yet there is no test at all;
- a jump in the offsets it hands to the stream is recorded as a "gap" and
  treated as acknowledged, and it drops the rest of a fetched batch when a
  rebalance starts, so a jump is what follows;
- records of a partition that is not active are dropped the same way.

The ledger is the worker's record instead. It knows where the stream of each
partition (re)starts (the offset Faust seeks to after every assignment), it
accepts events only in offset order from there, and it commits a partition
only up to the oldest event still in flight. An event that was already
admitted (Faust hands a batch over again after it seeks) is skipped. An
event past the next expected offset reveals a gap: the worker reads the
missing records itself (pipeline/gap_reader.py) and processes them first;
a seek back would not do, as Faust drops re-read records below its own
read offset. The worker's transport sends every commit through ``fence``
(pipeline/transport.py), so nothing else decides what is committed.

With several workers in the group, partitions move between them. On a
revocation Faust waits for every event it handed over to be acked
(``stream_wait_empty``) and commits through ``fence`` before the partitions
go, so the next owner starts after everything this worker finished; events
still in flight then (gap records, which Faust does not track) stay below
the commit and are replayed by the next owner, their user state already
flushed to the changelog, so they count once. After the assignment the
ledger forgets every partition it no longer holds (``keep_only``, and
``restart`` when Faust seeks): a late finish of one of them changes
nothing, and a partition that comes back starts from the commit its other
owner made. A partition of the ledger's topic that it does not follow is
never committed at Faust's offset: only the ledger knows what was finished.

Offsets are Kafka's: the committed offset is the next one to read.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


def _topic_of(tp: Hashable) -> object:
    """The topic of a partition key: Faust's ``TP`` (or any tuple) starts with it."""
    return tp[0] if isinstance(tp, tuple) and tp else None


class Admission(enum.Enum):
    """What to do with an event the stream handed over."""

    PROCESS = "process"   # the next offset: process it, then call finish()
    SKIP = "skip"         # admitted before: ack it to Faust, do nothing else
    GAP = "gap"           # offsets before it were never handed over: read them first


@dataclass
class _Partition:
    next_offset: int | None           # the offset the next accepted event must have
    generation: int
    start: int | None = None          # where this stream started (committed then)
    in_flight: set[int] = field(default_factory=set)
    committed: int | None = None      # last offset this ledger let through


class OffsetLedger:
    """Per-partition record of accepted and finished events.

    Keys are Faust's ``TP`` (any hashable works, which keeps this pure and
    unit-testable). Not thread-safe: the worker's event loop owns it.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._partitions: dict[Hashable, _Partition] = {}
        self.last_commit_at = time.monotonic()    # of the last commit the broker accepted
        self.commit_started_at: float | None = None  # of a commit still under way
        self._generation = 0
        self.gaps = 0          # jumps seen

    def start(self, tp: Hashable, offset: int | None) -> None:
        """The stream of ``tp`` restarts at ``offset`` (None: unknown, take the first event's)."""
        self._generation += 1
        old = self._partitions.get(tp)
        self._partitions[tp] = _Partition(next_offset=offset, generation=self._generation,
                                          start=offset,
                                          committed=old.committed if old else None)

    def restart(self, committed: Mapping[Hashable, int | None]) -> None:
        """After a seek to the committed offsets: these partitions (and no others) are ours.

        A partition the ledger already follows keeps its place: the events
        from the committed offset up to it were admitted already and are
        skipped when Faust hands them over again.
        """
        log.info("stream restarts at the committed offsets %s; the worker was at %s",
                 dict(committed), {tp: p.next_offset for tp, p in self._partitions.items()})
        for tp in set(self._partitions) - set(committed):
            del self._partitions[tp]
        for tp, offset in committed.items():
            known = self._partitions.get(tp)
            if known is not None and known.next_offset is not None and (
                    offset is None or offset <= known.next_offset):
                continue
            self.start(tp, offset if offset is not None and offset >= 0 else None)

    def keep_only(self, assigned: Iterable[Hashable]) -> None:
        """After an assignment: forget the partitions not in ``assigned`` (another worker's now).

        Faust calls ``seek_to_committed`` (``restart``) only when its
        assignment is not empty, so a worker left without partitions learns
        it here.
        """
        keep = set(assigned)
        gone = set(self._partitions) - keep
        if gone:
            log.info("partitions %s now belong to another worker", sorted(map(str, gone)))
        for tp in gone:
            del self._partitions[tp]

    def admit(self, tp: Hashable, offset: int) -> tuple[Admission, int]:
        """Whether to process this event, and the generation to pass to ``finish``."""
        part = self._partitions.get(tp)
        if part is None:
            # Faust never told us where this partition starts (no committed
            # offset existed): the first event it hands over is the start.
            self.start(tp, offset)
            part = self._partitions[tp]
            log.info("no committed offset for %s: starting at %d", tp, offset)
        if part.next_offset is None:
            part.next_offset = part.start = offset
        if offset == part.next_offset:
            part.next_offset = offset + 1
            part.in_flight.add(offset)
            return Admission.PROCESS, part.generation
        if offset < part.next_offset:
            return Admission.SKIP, part.generation
        self.gaps += 1
        log.warning("offsets %d..%d of %s were not handed to the worker; reading them",
                    part.next_offset, offset - 1, tp)
        return Admission.GAP, part.generation

    def expected(self, tp: Hashable) -> int:
        """The offset the next accepted event of ``tp`` must have (the start of a gap)."""
        part = self._partitions[tp]
        assert part.next_offset is not None
        return part.next_offset

    def step_to(self, tp: Hashable, offset: int) -> None:
        """Offsets up to ``offset`` hold no record (a gap the log itself has): skip them."""
        part = self._partitions[tp]
        if part.next_offset is not None and part.next_offset < offset:
            part.next_offset = offset

    def finish(self, tp: Hashable, offset: int, generation: int) -> None:
        """The event's offer (or dead letter) is acknowledged by the broker."""
        part = self._partitions.get(tp)
        if part is not None and part.generation == generation:
            part.in_flight.discard(offset)

    def safe_offset(self, tp: Hashable) -> int | None:
        """The highest offset that may be committed for ``tp`` now (None: nothing known)."""
        part = self._partitions.get(tp)
        if part is None or part.next_offset is None:
            return None
        return min(part.in_flight) if part.in_flight else part.next_offset

    def in_flight(self) -> int:
        return sum(len(p.in_flight) for p in self._partitions.values())

    def resume_offsets(self) -> dict[Hashable, int]:
        """Per followed partition, where the group would resume: the last commit this ledger
        made, else where its stream started (partitions with neither known are left out)."""
        out = {}
        for tp, part in self._partitions.items():
            done = part.committed if part.committed is not None else part.start
            if done is not None:
                out[tp] = done
        return out

    def fence(self, requested: Mapping[Any, int]) -> dict[Any, int]:
        """What may really be committed, given what Faust asked to commit.

        Partitions the ledger tracks are committed at their safe offset
        (whatever Faust computed); a partition whose safe offset has not moved
        since the last commit is left out. Partitions of other topics pass
        through unchanged; partitions of the ledger's topic that it does not
        track (revoked, or not started yet) are left out.
        """
        out: dict[Any, int] = {}
        for tp, offset in requested.items():
            if tp not in self._partitions and _topic_of(tp) != self.topic:
                out[tp] = offset
        for tp, part in self._partitions.items():
            safe = self.safe_offset(tp)
            if safe is None or (part.committed is not None and safe <= part.committed):
                continue
            out[tp] = safe
        return out

    def uncommitted(self) -> bool:
        """Whether some partition has finished work beyond its last commit."""
        for tp, part in self._partitions.items():
            safe = self.safe_offset(tp)
            done = part.committed if part.committed is not None else part.start
            if safe is not None and done is not None and safe > done:
                return True
        return False

    def commit_stalled_s(self, now: float | None = None) -> float:
        """How long finished work has waited for a commit to succeed (0: it is not waiting)."""
        now = time.monotonic() if now is None else now
        if self.commit_started_at is not None:
            return now - min(self.commit_started_at, self.last_commit_at)
        return now - self.last_commit_at if self.uncommitted() else 0.0

    def committed(self, offsets: Mapping[Hashable, int]) -> None:
        """The broker accepted this commit."""
        self.last_commit_at = time.monotonic()
        for tp, offset in offsets.items():
            part = self._partitions.get(tp)
            if part is not None:
                part.committed = offset
