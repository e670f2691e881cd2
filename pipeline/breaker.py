"""The worker's circuit breaker: a systematic fault stops consumption instead of filling the DLQ.

A poison message is one bad login; the same error on login after login is
a fault of the system (a changed topology, a writer schema the worker does
not know yet, a broken dependency), and dead-lettering the whole stream
would turn it into an outage that needs a replay to repair. So after
``threshold`` dead letters of one error type in a row, with no login
processed in between, the breaker trips: the worker takes no further login
(``park`` never returns), so nothing after the trip is finished or
committed; those logins stay on ``logins`` until the fault is fixed and the
worker restarted. The readiness and status pages report the reason.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class DeadLetterBreaker:
    """Counts dead letters of one error type in a row; trips at ``threshold`` (≥ 1)."""

    def __init__(self, threshold: int) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold must be at least 1, not {threshold}")
        self.threshold = threshold
        self.error_type: str | None = None
        self.in_a_row = 0
        self.reason: str | None = None
        self._never = asyncio.Event()

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def processed(self) -> None:
        """A login became an offer: the fault, if any, is not systematic."""
        self.error_type = None
        self.in_a_row = 0

    def dead_lettered(self, error_type: str, message: str, stage: str) -> bool:
        """Count one dead letter; True if this one trips the breaker (logged CRITICAL once)."""
        if error_type == self.error_type:
            self.in_a_row += 1
        else:
            self.error_type, self.in_a_row = error_type, 1
        if self.tripped or self.in_a_row < self.threshold:
            return False
        self.reason = (
            f"circuit breaker open: {self.in_a_row} logins in a row dead-lettered with "
            f"{error_type} at stage {stage} (last: {message[:300]}); consumption stopped, "
            f"the logins after it stay on the topic")
        log.critical(
            "%s. This is a systematic fault, not bad input: find it in the dead letters' "
            "error headers and the log (a changed topic, an unknown writer schema, a broken "
            "dependency), fix it, then restart the worker; it resumes where it stopped "
            "(docs/operations.md, 'The dead-letter circuit breaker')", self.reason)
        return True

    async def park(self) -> None:
        """Wait for ever (until cancelled at shutdown): the tripped worker takes no login."""
        await self._never.wait()
