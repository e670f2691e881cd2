"""Waiters: an offer applied between a handler's store check and its waiter's start is not missed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from edge.waiters import Waiters


async def test_an_offer_applied_before_the_waiter_runs_is_found_at_once() -> None:
    waiters = Waiters(limit=10)
    store: dict[bytes, Any] = {}
    offer: Any = object()
    # As the edge's handler does: the wait runs in a task, which starts a loop turn later.
    task = asyncio.ensure_future(waiters.wait(b"t1", 5.0, lambda: store.get(b"t1")))
    store[b"t1"] = offer                      # the materializer applies the offer ...
    assert waiters.notify([(b"t1", offer)]) == 0   # ... and there is nobody to wake yet
    started = time.monotonic()
    assert await task is offer
    assert time.monotonic() - started < 1.0
    assert waiters.count == 0


async def test_an_offer_applied_while_waiting_wakes_the_waiter() -> None:
    waiters = Waiters(limit=10)
    offer: Any = object()
    task = asyncio.ensure_future(waiters.wait(b"t2", 5.0, lambda: None))
    await asyncio.sleep(0)  # let the waiter register
    assert waiters.notify([(b"t2", offer)]) == 1
    assert await task is offer
    assert await waiters.wait(b"t3", 0.05, lambda: None) is None
