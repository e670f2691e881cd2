"""Per-user state kept by the worker, and how a login changes it.

State is a plain dict (JSON in the Faust table's changelog). A user's logins
all live in one partition of ``logins`` (the key is the user id), so the
offset of the last counted login tells a replayed login (at-least-once
delivery after a crash) from a new one: a replay is never counted twice.
``recent`` remembers the view each of the last few logins was computed
from, so a replay within that window gets exactly the same offer; an older
replay gets the right visit number (from the remembered offsets) and the
oldest remembered categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECENT_LOGINS = 16       # full views remembered, for identical replays
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


def view_for_login(state: dict[str, Any] | None, ticket_id: str,
                   position: Position) -> tuple[UserView, bool]:
    """The view for this login, and whether the login was already counted."""
    if not state:
        return new_user_view(), False
    already_counted = (state.get("partition") == position.partition
                       and position.offset <= state.get("last_offset", -1))
    if already_counted:
        for entry in state.get("recent", ()):
            if entry["ticket_id"] == ticket_id:
                return _view_of(entry), True
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


def next_state(state: dict[str, Any] | None, ticket_id: str, view: UserView, position: Position,
               login_at: int, country: str, shown_categories: list[str],
               expires_at: int) -> dict[str, Any]:
    """The state after counting this login; the offer's categories become recent."""
    state = state or {}
    recent_categories: list[str] = []
    for category in [*shown_categories, *view.recent_categories]:
        if category not in recent_categories:
            recent_categories.append(category)
    remembered = {"ticket_id": ticket_id, "visit": view.visit,
                  "recent_categories": list(view.recent_categories),
                  "last_login_at": view.last_login_at, "last_country": view.last_country,
                  "expires_at": expires_at}
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
