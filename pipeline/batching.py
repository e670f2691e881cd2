"""Natural batches: the events a stream has ready, handled together, with no timer.

The worker's agent receives events one at a time from Faust's stream. It
holds each event and goes on to the next one while the stream has more
ready (its channel's queue is not empty); once the stream has nothing more
ready, or ``max_size`` events are held, it hands the held events over as
one batch. At low rates every batch is one event, handed over as soon as it
arrives: batching adds no latency. Under load the batches grow to whatever
Faust fetched, up to ``max_size``.

A held event is one Faust has handed over and waits for (its
``stream_wait_empty`` at a revocation waits until every such event is
acked). If the stream stops yielding while events are held (a rebalance
clears the channel's queue between the readiness check and the next get,
or every queued event was skipped), the agent would wait on an empty queue
with the events in its hands, and the revocation would wait for them for
ever. So a held event that is not handed over within ``hold_limit_s``
(far longer than the stream takes to yield a ready event) is handed over
by a task of its own. Batches are handed over one at a time and in order
(a lock), so their events are handled in the order the stream yielded them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class NaturalBatches(Generic[T]):
    """Collect items into batches; ``process`` gets each batch, in order, one at a time.

    ``more_ready()`` says whether the source has another item ready now.
    ``on_error`` is told of an exception ``process`` raised in the hold-limit
    task (in the caller's own ``add`` it propagates as usual).
    """

    def __init__(self, process: Callable[[list[T]], Awaitable[None]], max_size: int,
                 more_ready: Callable[[], bool], on_error: Callable[[BaseException], None],
                 hold_limit_s: float = 0.05) -> None:
        if max_size < 1:
            raise ValueError(f"a batch holds at least one item, not {max_size}")
        self.process = process
        self.max_size = max_size
        self.more_ready = more_ready
        self.on_error = on_error
        self.hold_limit_s = hold_limit_s
        self._held: list[T] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._rescues: set[asyncio.Task[None]] = set()

    @property
    def held(self) -> int:
        """Items collected and not yet handed over."""
        return len(self._held)

    async def add(self, item: T) -> None:
        """Hold ``item``; hand the held items over if the source has nothing more ready."""
        self._held.append(item)
        if len(self._held) >= self.max_size or not self.more_ready():
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.hold_limit_s,
                                                                self._held_too_long)

    async def flush(self) -> None:
        """Hand the held items over now (after any batch already being handled)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            batch, self._held = self._held, []
            if batch:
                await self.process(batch)

    def _held_too_long(self) -> None:
        self._timer = None
        if not self._held:
            return
        log.info("%d events held for %.0f ms with the stream yielding nothing more; "
                 "handling them now", len(self._held), 1000 * self.hold_limit_s)
        task = asyncio.get_running_loop().create_task(self._rescue())
        self._rescues.add(task)
        task.add_done_callback(self._rescues.discard)

    async def _rescue(self) -> None:
        try:
            await self.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handling held events failed")
            self.on_error(exc)

    def close(self) -> None:
        """Drop the held items (never handled, so never finished) and stop the hold timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            log.info("%d held events dropped unhandled at shutdown; they are consumed again",
                     len(self._held))
        self._held = []
        for task in self._rescues:
            task.cancel()
