"""Per-user state kept by the worker, and how a login changes it.

State is a plain dict (JSON in the Faust table's changelog). A user's logins
all live in one partition of ``logins`` (the key is the user id), so the
offset of the last counted login tells a replayed login (at-least-once
delivery after a crash) from a new one: a replay is never counted twice.
``recent`` remembers the view each of the last ``RECENT_LOGINS`` logins was
computed from, with its ticket id, so

- a replay within that window gets exactly the same offer; an older replay
  gets the right visit number (from the remembered offsets) and the oldest
  remembered categories;
- a login whose ticket id is already there is a retry of that login (the
  origin derives the ticket id from the ``Idempotency-Key``): it is not
  counted again and gets the same view. A retry is recognised while the
  user has had fewer than ``RECENT_LOGINS`` other logins since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECENT_LOGINS = 32       # full views remembered, for identical replays and retries
COUNTED_OFFSETS = 128    # offsets remembered, for exact visit numbers on replay
RECENT_CATEGORIES = 5


@dataclass(frozen=True)
class UserView:
    """What the engine knows about the user at the time of one login."""

    visit: int                        # 1 for the first login
    recent_categories: tuple[str, ...]  # most recent first
    last_login_at: int | None         # µs, the previous login's time
    last_country: str | None


@dataclass(frozen=True)
class Position:
    """Where a login sits in the ``logins`` topic."""

    partition: int
    offset: int


def new_user_view() -> UserView:
    return UserView(visit=1, recent_categories=(), last_login_at=None, last_country=None)


def _view_of(entry: dict[str, Any]) -> UserView:
    return UserView(entry["visit"], tuple(entry["recent_categories"]), entry["last_login_at"],
                    entry["last_country"])


def already_counted(state: dict[str, Any], position: Position) -> bool:
    """This offset of the user's partition was counted before: a replay."""
    return (state.get("partition") == position.partition
            and position.offset <= state.get("last_offset", -1))


def _remembered(state: dict[str, Any], ticket_id: str) -> dict[str, Any] | None:
    for entry in state.get("recent", ()):
        if entry["ticket_id"] == ticket_id:
            return entry
    return None


def is_retry(state: dict[str, Any] | None, ticket_id: str, position: Position) -> bool:
    """A login new at this offset whose ticket id the user already has (a client retry)."""
    if not state:
        return False
    return not already_counted(state, position) and _remembered(state, ticket_id) is not None


def view_for_login(state: dict[str, Any] | None, ticket_id: str,
                   position: Position) -> tuple[UserView, bool]:
    """The view for this login, and whether the login was already counted.

    Already counted: a replay of a counted offset, or a retry (a ticket id
    the user already has).
    """
    if not state:
        return new_user_view(), False
    remembered = _remembered(state, ticket_id)
    if remembered is not None:
        return _view_of(remembered), True
    if already_counted(state, position):
        later = sum(1 for o in state.get("offsets", ()) if o > position.offset)
        oldest = state["recent"][-1] if state.get("recent") else None
        return UserView(
            visit=max(1, int(state["visits"]) - later),
            recent_categories=tuple(oldest["recent_categories"]) if oldest else (),
            last_login_at=oldest["last_login_at"] if oldest else None,
            last_country=oldest["last_country"] if oldest else None,
        ), True
    return UserView(
        visit=int(state["visits"]) + 1,
        recent_categories=tuple(state.get("recent_categories", ())),
        last_login_at=state.get("last_login_at"),
        last_country=state.get("last_country"),
    ), False


def remembered_created_at(state: dict[str, Any] | None, ticket_id: str) -> int | None:
    """When the remembered offer for this ticket was made (µs), so a replay is identical."""
    entry = _remembered(state, ticket_id) if state else None
    return None if entry is None else entry.get("created_at")


def next_state(state: dict[str, Any] | None, ticket_id: str, view: UserView, position: Position,
               login_at: int, country: str, shown_categories: list[str],
               expires_at: int, created_at: int = 0) -> dict[str, Any]:
    """The state after counting this login; the offer's categories become recent."""
    state = state or {}
    recent_categories: list[str] = []
    for category in [*shown_categories, *view.recent_categories]:
        if category not in recent_categories:
            recent_categories.append(category)
    remembered = {"ticket_id": ticket_id, "visit": view.visit,
                  "recent_categories": list(view.recent_categories),
                  "last_login_at": view.last_login_at, "last_country": view.last_country,
                  "expires_at": expires_at, "created_at": created_at}
    same_partition = state.get("partition") == position.partition
    offsets = [*state.get("offsets", []), position.offset] if same_partition else [position.offset]
    return {
        "visits": view.visit,
        "last_login_at": login_at,
        "last_country": country,
        "recent_categories": recent_categories[:RECENT_CATEGORIES],
        "recent": [remembered, *state.get("recent", [])][:RECENT_LOGINS],
        "partition": position.partition,
        "last_offset": position.offset,
        "offsets": offsets[-COUNTED_OFFSETS:],
    }


def retried_state(state: dict[str, Any], ticket_id: str, position: Position,
                  expires_at: int) -> tuple[dict[str, Any], int]:
    """The state after a retry, and the expiry its offer carries (µs).

    Nothing is counted. The offset is remembered, so a replay of the retry
    is known too, and the ticket keeps the later of the two expiries: the
    client holds the ticket of whichever attempt answered last.
    """
    same_partition = state.get("partition") == position.partition
    last = max(position.offset, state.get("last_offset", -1)) if same_partition else position.offset
    effective = expires_at
    recent = []
    for entry in state.get("recent", ()):
        if entry["ticket_id"] == ticket_id:
            effective = max(int(entry.get("expires_at", 0)), expires_at)
            entry = {**entry, "expires_at": effective}
        recent.append(entry)
    return {**state, "partition": position.partition, "last_offset": last,
            "recent": recent}, effective
