"""uvicorn's httptools protocol internals that runtime/http_protocol.py builds on.

uvicorn has no public extension point for the HTTP protocol besides passing
a protocol class, so the bounded protocol subclasses ``HttpToolsProtocol``
(docs/decisions/0002-bounded-http-in-the-protocol.md). ``ProtocolBase`` is
that class with the protocol's and the request cycle's internal state behind
public methods; http_protocol.py overrides only the callbacks listed here.

Internal names touched (none starts with an underscore, none is documented;
tests/unit/test_compat.py checks each exists):

- ``HttpToolsProtocol`` callbacks overridden: ``connection_made``,
  ``connection_lost``, ``data_received`` (asyncio), ``on_message_begin``,
  ``on_header``, ``on_headers_complete``, ``on_message_complete``
  (httptools' parser), ``send_400_response`` (uvicorn: how a parser error
  is answered);
- ``HttpToolsProtocol`` attributes read: ``cycle``, ``headers``, ``url``,
  ``transport``, ``loop``;
- ``RequestResponseCycle`` attributes: ``response_started``,
  ``response_complete`` (read), ``disconnected``, ``message_event`` (set).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from runtime.compat import Version, require_version

PRIVATE_NAMES: dict[type, tuple[str, ...]] = {
    HttpToolsProtocol: ("connection_made", "connection_lost", "data_received",
                        "on_message_begin", "on_header", "on_headers_complete",
                        "on_message_complete", "send_400_response",
                        "cycle", "headers", "url", "transport", "loop"),
    RequestResponseCycle: ("response_started", "response_complete", "disconnected",
                           "message_event"),
}
TESTED: tuple[Version, Version] = ((0, 54), (0, 55))  # [from, to); tested with 0.54.0


def check_version() -> str:
    """The installed uvicorn version; ``UnsupportedVersion`` outside ``TESTED``."""
    return require_version("uvicorn", TESTED, __name__)


check_version()


class ProtocolBase(HttpToolsProtocol):
    """uvicorn's httptools protocol, its internal state read and changed through methods."""

    @property
    def client_transport(self) -> asyncio.Transport:
        """The connection's transport as uvicorn holds it (what ``connection_made`` got)."""
        transport: asyncio.Transport = self.transport
        return transport

    @property
    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the server runs on."""
        loop: asyncio.AbstractEventLoop = self.loop
        return loop

    def header_count(self) -> int:
        """Header fields parsed so far in the current request."""
        return len(self.headers)

    def head_size(self) -> int:
        """Bytes of the current request's head: its URL and its header fields, each
        counted with its ``": "`` and ``"\\r\\n"``."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def response_started(self) -> bool:
        """The current request's response has begun (its status line may be out)."""
        return self.cycle is not None and bool(self.cycle.response_started)

    def abandon_request(self) -> None:
        """Tell the app running the current request, if any, that the client has gone:
        its sends are dropped and its ``receive`` answers ``http.disconnect``."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
