"""Ending a long-poll when its client goes away, so it frees what it holds at once.

A handler awaiting an offer does not notice by itself that the client closed
the connection: an aborted ``?wait=30`` would keep its waiter slot for the
whole 30 s, and enough aborted requests would hold every slot, turning real
users away with 503. The server reports a closed connection as an
``http.disconnect`` message on the request's ``receive`` channel;
``until_disconnected`` watches for it while the handler waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection while the request waited."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result; ClientGone (and ``work`` cancelled) if the client leaves first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    raise ClientGone
