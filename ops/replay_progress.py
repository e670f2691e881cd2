"""What ``positioning dlq replay`` has replayed, kept as one consumer-group commit per partition.

Kafka cannot delete one record, so the dead letters stay where they are and
the replay group (``<worker_id>.dlq-replay``) remembers which are handled
(docs/decisions/0012-dead-letter-replay.md). Per partition of the
dead-letter topic:

- the committed **offset** is the mark: every dead letter below it was
  replayed (or is gone from the log: retention deleted it);
- the commit's **metadata** lists the dead letters at or above the mark that
  were replayed too (a selective replay leaves the records it did not
  select pending, so the replayed ones after the first pending one cannot
  be covered by the mark), as inclusive ranges: ``r1:12-15,20``.

So ``kafka-consumer-groups.sh --describe --group <worker_id>.dlq-replay``
shows, as lag, an upper bound of the dead letters not yet replayed. The
metadata must fit the broker's ``offset.metadata.max.bytes`` (4096 by
default): a selection that would leave more separate replayed ranges above
the mark is refused before anything is replayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

METADATA_PREFIX = "r1:"
MAX_METADATA_BYTES = 4096
"""Kafka's default ``offset.metadata.max.bytes``: the longest metadata a commit may carry."""

Range = tuple[int, int]


class ProgressUnreadable(ValueError):
    """A commit of the replay group whose metadata this version cannot read."""


class ProgressFull(ValueError):
    """The replayed offsets above the mark do not fit in a commit's metadata."""


@dataclass(frozen=True)
class PartitionProgress:
    """The replayed dead letters of one partition: all below ``mark``, and ``above`` (inclusive
    ranges, sorted, apart from each other and from the mark)."""

    mark: int = 0
    above: tuple[Range, ...] = ()

    def replayed(self, offset: int) -> bool:
        """Whether the dead letter at ``offset`` was replayed (or is below the log's start)."""
        return offset < self.mark or any(a <= offset <= b for a, b in self.above)

    def with_replayed(self, offsets: Iterable[int], log_start: int = 0) -> PartitionProgress:
        """This progress with ``offsets`` replayed too; offsets below ``log_start`` (deleted
        by retention) count as handled, so the mark never waits on a record that is gone."""
        ranges = [*self.above, *((o, o) for o in offsets)]
        return _normalised(max(self.mark, log_start), ranges)

    @property
    def replayed_above_mark(self) -> int:
        return sum(b - a + 1 for a, b in self.above)

    def metadata(self) -> str:
        """The commit metadata: ``r1:`` and the ranges above the mark.

        Raises:
            ProgressFull: longer than ``MAX_METADATA_BYTES``.
        """
        text = METADATA_PREFIX + ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.above)
        if len(text.encode()) > MAX_METADATA_BYTES:
            raise ProgressFull(
                f"{len(self.above)} separate ranges of replayed dead letters lie above the "
                f"first pending one (offset {self.mark}): more than a commit can remember "
                f"({MAX_METADATA_BYTES} bytes of metadata). Replay or select the pending "
                "dead letters in between first (e.g. --offsets P:A-B or --all)")
        return text

    @classmethod
    def from_commit(cls, offset: int | None, metadata: str | None) -> PartitionProgress:
        """The progress a commit holds (offset None or negative: nothing committed).

        Raises:
            ProgressUnreadable: the metadata is not ``r1:`` and ranges.
        """
        mark = offset if offset is not None and offset >= 0 else 0
        if not metadata:
            return cls(mark)
        if not metadata.startswith(METADATA_PREFIX):
            raise ProgressUnreadable(f"replay group commit metadata {metadata[:80]!r} is not "
                                     f"{METADATA_PREFIX}<ranges>")
        ranges: list[Range] = []
        for part in filter(None, metadata[len(METADATA_PREFIX):].split(",")):
            first, _, last = part.partition("-")
            try:
                ranges.append((int(first), int(last or first)))
            except ValueError:
                raise ProgressUnreadable(f"replay group commit metadata: {part!r} is not "
                                         "an offset or a range A-B") from None
        return _normalised(mark, ranges)


def _normalised(mark: int, ranges: list[Range]) -> PartitionProgress:
    """Ranges sorted and joined, the mark moved over every range that touches it."""
    joined: list[Range] = []
    for a, b in sorted(ranges):
        if joined and a <= joined[-1][1] + 1:
            joined[-1] = (joined[-1][0], max(joined[-1][1], b))
        else:
            joined.append((a, b))
    above: list[Range] = []
    for a, b in joined:
        if a <= mark:
            mark = max(mark, b + 1)
        else:
            above.append((a, b))
    return PartitionProgress(mark, tuple(above))
