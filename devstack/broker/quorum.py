"""Who leads the KRaft controller quorum, read from the nodes' own files (no JVM tool).

Each controller keeps its view of the election in
``<log dir>/__cluster_metadata-0/quorum-state``, a JSON document with
``leaderId`` (−1 while no leader is known) and ``leaderEpoch``, rewritten at
every election it takes part in. A node that was killed keeps its last view,
so the views of the running nodes are compared and the newest epoch wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class QuorumView:
    """One controller's view: the leader it knows of (None: an election is on) and the epoch."""

    leader_id: int | None
    epoch: int


def quorum_state_file(data_dir: Path) -> Path:
    return data_dir / "__cluster_metadata-0" / "quorum-state"


def read_view(data_dir: Path) -> QuorumView | None:
    """The view in ``data_dir``'s quorum-state file; None if it is missing or unreadable
    (a node that never started, or a file being replaced)."""
    try:
        state = json.loads(quorum_state_file(data_dir).read_text())
        leader, epoch = int(state["leaderId"]), int(state["leaderEpoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return QuorumView(leader if leader >= 0 else None, epoch)


def newest(views: Iterable[QuorumView | None]) -> QuorumView | None:
    """The view with the highest epoch (at one epoch, one that knows the leader); None if none."""
    known = [v for v in views if v is not None]
    if not known:
        return None
    return max(known, key=lambda v: (v.epoch, v.leader_id is not None))
