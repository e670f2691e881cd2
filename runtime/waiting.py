"""Waiting for a condition with a deadline: the one polling loop of the project.

Processes, brokers and HTTP endpoints come up on their own time; callers
wait for what they need (a port answering, a page saying ready) instead of
sleeping a guessed interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class TimedOut(TimeoutError):
    """The condition did not hold before the deadline; the message says what was awaited."""


def wait_until(condition: Callable[[], T | None], timeout_s: float, what: str,
               interval_s: float = 0.1) -> T:
    """Call ``condition`` every ``interval_s`` until it returns something truthy, and return that.

    Raises:
        TimedOut: after ``timeout_s`` seconds without a truthy answer.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


async def wait_until_async(condition: Callable[[], Awaitable[T | None]], timeout_s: float, what: str,
                           interval_s: float = 0.1) -> T:
    """``wait_until`` for the event loop, with a coroutine function as the condition.

    Raises:
        TimedOut: after ``timeout_s`` seconds without a truthy answer.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)
