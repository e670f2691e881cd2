"""The state a migration writes: the user's counts kept, the old topic's offsets forgotten."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from engine.state import Position, next_state, view_for_login
from pipeline.state_migration import relocated_state, user_partition


def test_a_relocated_user_continues_counting_at_any_offset_of_the_new_partition() -> None:
    state = None
    for offset, ticket in enumerate(["t1", "t2", "t3"], start=500):
        view, replayed = view_for_login(state, ticket, Position(2, offset))
        assert not replayed
        state = next_state(state, ticket, view, Position(2, offset), 1, "GB", ["books"], 9)
    assert state is not None and state["visits"] == 3
    moved = relocated_state(state, 2)       # same partition number, offsets start again
    view, replayed = view_for_login(moved, "t4", Position(2, 0))
    assert (view.visit, replayed) == (4, False)
    # A client retry of a ticket the user already has is still recognised.
    assert view_for_login(moved, "t3", Position(2, 1))[1]


def test_users_go_where_the_origins_producer_sends_their_logins() -> None:
    for user in ["ada", "bob", "user-17"]:
        assert user_partition(user, 8) == (murmur2(user.encode()) & 0x7FFFFFFF) % 8
    assert {user_partition(f"u{i}", 8) for i in range(200)} == set(range(8))
