"""A plain ASGI path for the hottest request: ``GET /offers/{ticket}`` without a query.

It answers straight from ``Lookups.now`` and skips Starlette's middleware
and routing, whose cost would be paid by every lookup. Everything else
(``?wait``, events, health, metrics), and every request before the node's
store is open (``lookups()`` returns None), goes to the Starlette app unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from edge.cors import CorsPolicy
from edge.lookup import Lookups

PREFIX = "/offers/"


class FastLookupPath:
    """``lookups`` returns the node's current Lookups, or None while it has none."""

    def __init__(self, app: ASGIApp, lookups: Callable[[], Lookups | None],
                 base_headers: dict[str, str], cors: CorsPolicy) -> None:
        self.app = app
        self.lookups = lookups
        self.base = [(k.encode(), v.encode()) for k, v in base_headers.items()]
        self.base.append((b"content-type", b"application/json"))
        self.cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            path: str = scope["path"]
            lookups = self.lookups()
            if lookups is not None and path.startswith(PREFIX) and "/" not in path[len(PREFIX):]:
                answer = lookups.now(path[len(PREFIX):])
                headers = [*self.base, (b"content-length", str(len(answer.body)).encode())]
                headers.extend((k.encode(), v.encode()) for k, v in answer.headers)
                headers.extend(self.cors.headers(scope["headers"]))
                await send({"type": "http.response.start", "status": answer.status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": answer.body})
                return
        await self.app(scope, receive, send)
