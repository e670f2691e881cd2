"""The response headers a security review checks (OWASP Secure Headers Project), on every
answer of an ASGI app, its fast paths included.

``SecurityHeaders`` wraps the outermost app and adds each header the answer
does not set itself: ``X-Content-Type-Options: nosniff``, a
``Referrer-Policy``, and for APIs a ``Content-Security-Policy`` that allows
nothing and no framing (``frame-ancestors 'none'``). A page sets its own
policy (the origin's web client does), which is then kept.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)


class SecurityHeaders:
    """ASGI middleware: ``headers`` (lower-case names) added to each HTTP answer that lacks
    them. ``state`` is the wrapped app's, so callers reach it as before."""

    def __init__(self, app: ASGIApp, headers: tuple[tuple[bytes, bytes], ...] = API_HEADERS
                 ) -> None:
        self.app = app
        self.headers = headers
        self.state: Any = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {name.lower() for name, _ in message.get("headers", ())}
                message["headers"] = [*message.get("headers", ()),
                                      *(h for h in extra if h[0] not in have)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
