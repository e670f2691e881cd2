"""Requests waiting for an offer that has not arrived yet.

The materializer calls ``notify`` right after a batch is written, in the
same event loop, so a waiter wakes the moment its offer is applied: no
polling. A waiter is registered and the store checked once more without
an ``await`` in between, so an offer applied before the waiter existed is
found by that check and one applied after wakes it: none slips past.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from edge.store import StoredOffer


class TooManyWaiters(RuntimeError):
    """The cap on concurrent waiters is reached; the caller answers 503."""


class Waiters:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_ticket: dict[bytes, list[asyncio.Future[StoredOffer]]] = {}
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def register(self, ticket_id: bytes) -> asyncio.Future[StoredOffer]:
        if self._count >= self.limit:
            raise TooManyWaiters(f"{self._count} requests are already waiting")
        future: asyncio.Future[StoredOffer] = asyncio.get_running_loop().create_future()
        self._by_ticket.setdefault(ticket_id, []).append(future)
        self._count += 1
        return future

    def unregister(self, ticket_id: bytes, future: asyncio.Future[StoredOffer]) -> None:
        futures = self._by_ticket.get(ticket_id)
        if futures is None or future not in futures:
            return
        futures.remove(future)
        self._count -= 1
        if not futures:
            del self._by_ticket[ticket_id]

    async def wait(self, ticket_id: bytes, timeout: float,
                   lookup: Callable[[], StoredOffer | None]) -> StoredOffer | None:
        """The ticket's offer once applied, waiting at most ``timeout`` seconds; None if not.

        ``lookup`` reads the store right after the waiter is registered: the
        caller's own check may have run a loop turn earlier (a coroutine
        wrapped in a task starts on the next turn), and an offer applied in
        between notified nobody.

        Raises:
            TooManyWaiters: the limit of open waiters is reached.
        """
        future = self.register(ticket_id)
        try:
            stored = lookup()
            if stored is not None:
                return stored
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        finally:
            self.unregister(ticket_id, future)

    def notify(self, offers: Iterable[tuple[bytes, StoredOffer]]) -> int:
        """Wake everyone waiting for these tickets; returns how many woke."""
        if not self._by_ticket:
            return 0
        woken = 0
        for ticket_id, offer in offers:
            for future in self._by_ticket.pop(ticket_id, ()):
                self._count -= 1
                if not future.done():
                    future.set_result(offer)
                    woken += 1
        return woken
