"""`positioning dlq list`: the dead letters a selection matches, with their errors and counts.

Reads only (ops/dead_letters.py): nothing is committed or produced.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ops.dead_letter_selection import Selection, iso_utc
from ops.dead_letters import (
    DEFAULT_TIMEOUT_S,
    DeadLetter,
    LoginView,
    Snapshot,
    read_dead_letters,
    replay_group,
)
from runtime.settings import Settings


@dataclass
class Listing:
    """``dlq list``: the matching dead letters (the latest ``limit``), counted by error type."""

    topic: str
    group: str
    total: int
    matched: list[DeadLetter]
    shown: list[DeadLetter]
    snapshot: Snapshot

    @property
    def counts(self) -> dict[str, int]:
        """Matching dead letters per error type, most first."""
        return dict(Counter(letter.error_type for letter in self.matched).most_common())

    @property
    def replayed(self) -> int:
        return sum(1 for letter in self.matched if self.snapshot.replayed(letter))

    def render(self) -> str:
        """The listing for a terminal: one block per record shown, then the counts."""
        lines = [f"{self.topic}: {self.total} dead letters; replay group {self.group}"]
        for letter in self.shown:
            topic, partition, offset = letter.source
            state = "replayed" if self.snapshot.replayed(letter) else "pending"
            lines.append(f"{iso_utc(letter.at_us)}  {letter.partition}:{letter.offset}  "
                         f"{letter.stage or '?'}/{letter.error_type}  from {topic or '?'}"
                         f"[{'?' if partition is None else partition}]"
                         f"@{'?' if offset is None else offset}  {state}")
            if letter.replayed_from:
                lines.append(f"    a failed replay of {letter.replayed_from}")
            lines.append(f"    error: {letter.error_message}")
            lines.append(f"    login: {_login_line(letter)}")
        counts = ", ".join(f"{kind} {n}" for kind, n in self.counts.items()) or "none"
        hidden = len(self.matched) - len(self.shown)
        lines.append(f"{len(self.matched)} matched ({self.replayed} replayed, "
                     f"{len(self.matched) - self.replayed} pending"
                     f"{f'; {hidden} older not shown' if hidden else ''}); "
                     f"by error type: {counts}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """One document: the records shown and the counts (of every match, not only those shown)."""
        return {
            "topic": self.topic, "replay_group": self.group,
            "high_watermarks": {str(p): end for p, end in self.snapshot.ends.items()},
            "counts": {"total": self.total, "matched": len(self.matched),
                       "shown": len(self.shown), "replayed": self.replayed,
                       "pending": len(self.matched) - self.replayed,
                       "by_error_type": self.counts},
            "records": [letter.to_json(self.snapshot.replayed(letter)) for letter in self.shown],
        }


def _login_line(letter: DeadLetter) -> str:
    """What the record's bytes are today: a login that decodes (and would be accepted), or not."""
    view = LoginView.of(letter.value)
    login = view.login
    if login is None:
        same = view.problem == f"undecodable: {letter.error_message}"
        return "still undecodable (the same error)" if same else view.problem or ""
    text = (f"user {login['user_id']!r}, ticket {login['ticket_id']}, ip {login['ip']}, "
            f"accepted {iso_utc(login['login_accepted_at'])}, "
            f"expires {iso_utc(login['expires_at'])}")
    return f"{text} ({view.problem})" if view.problem else f"decodes now: {text}"


async def list_dead_letters(settings: Settings, selection: Selection, limit: int | None = None,
                            timeout_s: float = DEFAULT_TIMEOUT_S) -> Listing:
    """The dead letters ``selection`` matches, oldest first; with ``limit``, only the latest
    ``limit`` of them are shown (the counts still cover every match).

    Raises: as ``read_dead_letters``.
    """
    snapshot = await read_dead_letters(settings, timeout_s)
    matched = sorted((r for r in snapshot.records if r.matches(selection)),
                     key=lambda r: (r.at_us, r.partition, r.offset))
    shown = matched if limit is None else matched[max(0, len(matched) - limit):] if limit else []
    return Listing(snapshot.topic, replay_group(settings), len(snapshot.records), matched,
                   shown, snapshot)


