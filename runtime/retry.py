"""Retrying a step that talks to Kafka until it succeeds, on tenacity.

A component that cannot reach the broker keeps trying, with a capped
exponential backoff (0.1 s doubling to 5 s), and says so in its log on every
failure: it never gives up silently, and never gives up at all, because
giving up would lose an acknowledged login or leave an edge behind. Whoever
needs a limit wraps the call in ``asyncio.timeout``. Cancellation is not an
error and stops the retries at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never, wait_exponential

T = TypeVar("T")

BACKOFF = wait_exponential(multiplier=0.1, min=0.1, max=5.0)
"""0.1 s, 0.2 s, 0.4 s, ... capped at 5 s between attempts."""


def forever(what: str, logger: logging.Logger, *,
            retry_on: tuple[type[BaseException], ...] = (Exception,),
            on_failure: Callable[[BaseException], None] | None = None,
            level: int = logging.ERROR) -> AsyncRetrying:
    """Attempts for ``async for attempt in forever(...): with attempt: ...``.

    Every failure of one of ``retry_on`` is logged at ``level`` with what
    failed, the attempt number and the next delay, and passed to
    ``on_failure`` (a metric, say); any other exception propagates at once.
    """
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if error is not None and on_failure is not None:
            on_failure(error)
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.log(level, "%s failed (attempt %d, %r); retrying in %.1fs",
                   what, state.attempt_number, error, delay)

    return AsyncRetrying(stop=stop_never, wait=BACKOFF, retry=retry_if_exception_type(retry_on),
                         before_sleep=before_sleep, reraise=True)


async def call_forever(step: Callable[[], Awaitable[T]], what: str, logger: logging.Logger, *,
                       retry_on: tuple[type[BaseException], ...] = (Exception,),
                       on_failure: Callable[[BaseException], None] | None = None,
                       level: int = logging.ERROR) -> T:
    """Await ``step()`` until it returns, retrying as ``forever`` does; returns its result."""
    async for attempt in forever(what, logger, retry_on=retry_on, on_failure=on_failure,
                                 level=level):
        with attempt:
            return await step()
    raise AssertionError("unreachable: forever() never stops")
