"""A plain ASGI path for the hottest request: ``POST /login``.

It calls the very handler the Starlette route calls, with a Request built
from the scope, and skips Starlette's middleware and routing, whose cost
would be paid by every login. Everything else (other methods on ``/login``,
every other path, lifespan) goes to the Starlette app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

LOGIN_PATH = "/login"


class FastLoginPath:
    def __init__(self, app: ASGIApp, login: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = app
        self.login = login

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == LOGIN_PATH):
            response = await self.login(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
