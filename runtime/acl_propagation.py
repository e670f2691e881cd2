"""Waiting out ACL propagation across the brokers of a KRaft cluster.

An ACL is a record in the cluster's metadata log. ``CreateAcls`` answers once
the controllers have committed it, and each broker applies it when it replays
the log, a little later on a busy machine. So a request that reaches another
broker right after a grant may still be refused, as ``CreateTopics`` was on a
three-node cluster. Kafka's own tools leave the retry to the caller (KIP-500:
metadata is eventually consistent across brokers).

``through_propagation`` retries such a refusal for up to
``ACL_PROPAGATION_S``, logging each one; a refusal that outlasts the window
is a missing grant and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

T = TypeVar("T")

ACL_PROPAGATION_S = 20.0
"""How long (s) a refusal is taken for a grant that has not reached every broker yet."""

_WAIT = wait_exponential(multiplier=0.05, min=0.05, max=1.0)
log = logging.getLogger(__name__)


def _log(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s refused (attempt %d, %r): waiting for the ACLs to reach every broker",
                    what, state.attempt_number, error)
    return before_sleep


def retrying(what: str, refused: Callable[[BaseException], bool],
             window_s: float = ACL_PROPAGATION_S) -> Retrying:
    """Attempts for ``for attempt in retrying(...): with attempt: ...``: a failure for which
    ``refused(error)`` holds is retried until ``window_s`` has passed, then re-raised."""
    return Retrying(stop=stop_after_delay(window_s), wait=_WAIT,
                    retry=retry_if_exception(refused), before_sleep=_log(what), reraise=True)


async def through_propagation(step: Callable[[], Awaitable[T]], what: str,
                              refused: Callable[[BaseException], bool],
                              window_s: float = ACL_PROPAGATION_S) -> T:
    """Await ``step()``, retrying it as ``retrying`` does; returns its result."""
    async for attempt in AsyncRetrying(stop=stop_after_delay(window_s), wait=_WAIT,
                                       retry=retry_if_exception(refused),
                                       before_sleep=_log(what), reraise=True):
        with attempt:
            return await step()
    raise AssertionError("unreachable: the last attempt re-raises")
