"""uvicorn's httptools protocol, bounded in size and time, writing each response in one call.

**Bounds.** uvicorn's httptools protocol puts no limit on the size of a
request's head and no time limit on a head or body that never finishes
(why that matters, with the measurements: docs/decisions/0002).
``BoundedHttpToolsProtocol`` adds, per ``HttpLimits``:

- the head (request line and headers) at most ``max_head_bytes``, at most
  ``max_headers`` fields: ``431`` and the connection closed; while the head
  is incomplete at most that much plus one read (256 KiB) is buffered;
- the head complete within ``head_timeout_s`` of its first byte, or of the
  connection's opening (a connection that never sends a byte is closed):
  ``408`` and closed;
- the body complete within ``body_timeout_s`` of the head: ``408`` and
  closed (or just closed, if the response has begun).

uvicorn's keep-alive time-out still closes a connection idle between requests.

uvicorn writes a response's status line and headers, then its body, as two
``transport.write`` calls, and uvloop sends each at once: two ``write``
system calls, two TCP segments, and on loopback two wake-ups of the
client, which can cost more kernel time than the request's own Python.
What one write per response gains, measured: docs/decisions/0005.

``CoalescingWrites`` stands in for the transport: writes made while a
response is being sent (in one turn of the event loop) are joined and
handed to the real transport once, at the end of that turn. Nothing is
reordered, nothing waits for another turn (no added latency), a close
sends what is pending first, and more than ``FLUSH_AT`` pending bytes go
out at once so a large streamed body is never held in memory. The edge,
the origin and the bare baselines of ``positioning bench`` all run on it,
so the benchmark's comparisons stay on one server stack.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from runtime.compat.uvicorn import ProtocolBase

FLUSH_AT = 64 * 1024
LINGER_S = 2.0  # after a refusal, how long the rest of the request is read and dropped


@dataclass(frozen=True)
class HttpLimits:
    """Per-request bounds (bytes, seconds); see the module docstring."""

    max_head_bytes: int = 16 * 1024
    max_headers: int = 64
    head_timeout_s: float = 10.0
    body_timeout_s: float = 10.0


class _Refused(Exception):
    """A request refused while its head was parsed (status, reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CoalescingWrites:
    """A write transport that joins the writes of one event-loop turn into one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        # A transport closed under us (the peer went away) is uvicorn's to notice,
        # through connection_lost, exactly as if it had written there itself.
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, ...) is the transport's.
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(ProtocolBase):
    """Pass as uvicorn's ``http`` protocol class (``server_settings`` does).

    Subclasses set ``limits``. The hooks are uvicorn's protocol callbacks; its
    internal state is read through runtime/compat/uvicorn.py's ``ProtocolBase``,
    which checks the uvicorn version they were written for.
    """

    limits = HttpLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        writes = CoalescingWrites(transport, self.event_loop)
        super().connection_made(writes)  # type: ignore[arg-type]
        self._head_bytes = 0
        self._in_head = True
        self._discarding = False
        self._refusal: _Refused | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = self.event_loop.call_later(
            self.limits.head_timeout_s, self._timed_out, "request head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._in_head:
            # Bytes of earlier reads were all head (it was not complete after them).
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(431, "Request Header Fields Too Large")
                return
            self._head_bytes += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.event_loop.call_later(self.limits.head_timeout_s,
                                                          self._timed_out, "request head")

    def _refuse_while_parsing(self, status: int, reason: str) -> None:
        """Stop the parser: uvicorn then calls send_400_response, which answers this."""
        self._refusal = _Refused(status, reason)
        raise self._refusal

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.header_count() >= self.limits.max_headers:
            self._refuse_while_parsing(431, "Request Header Fields Too Large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.head_size() > self.limits.max_head_bytes:
            self._refuse_while_parsing(431, "Request Header Fields Too Large")
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        self._body_timer = self.event_loop.call_later(self.limits.body_timeout_s,
                                                      self._timed_out, "request body")

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error with 400; a refusal raised by a
        # callback above surfaces here as one, and gets its own status.
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self._refuse(self._refusal.status, self._refusal.reason)

    def _timed_out(self, what: str) -> None:
        self._head_timer = self._body_timer = None
        if self.client_transport.is_closing():
            return
        if self.response_started():
            self.client_transport.close()
            return
        self._refuse(408, f"Request Timeout ({what})")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` with a plain-text reason and close the connection."""
        self._cancel_timers()
        self.abandon_request()  # the app (if it runs) sees a disconnect: its sends are dropped
        body = reason.encode("ascii")
        head = (f"HTTP/1.1 {status} {reason.split(' (')[0]}\r\ncontent-type: text/plain; "
                f"charset=utf-8\r\ncontent-length: {len(body)}\r\nconnection: close\r\n"
                f"cache-control: no-store\r\n\r\n").encode("ascii")
        if self.client_transport.is_closing():
            return
        self.client_transport.write(head + body)
        # A lingering close, as web servers do: closing with the client's bytes
        # unread would reset the connection, and the client could lose the
        # answer. Send it, half-close, read and drop the rest for a moment.
        if self.client_transport.can_write_eof():
            self.client_transport.write_eof()
            self._discarding = True
            self.event_loop.call_later(LINGER_S, self.client_transport.close)
        else:
            self.client_transport.close()


def bounded_protocol(limits: HttpLimits) -> type[BoundedHttpToolsProtocol]:
    """A protocol class with these limits (uvicorn builds one instance per connection)."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})


def server_settings(limits: HttpLimits = HttpLimits()) -> dict[str, Any]:
    """The uvicorn settings every HTTP server here runs with: the origin, the edges
    (cli/main.py) and the benchmark's bare baselines (loadtest/bench/bare.py).

    uvicorn's own proxy-header handling is off: it would rewrite the client
    address from ``X-Forwarded-For`` before the origin's trusted-proxies
    check runs (it trusts 127.0.0.1 by default). Forwarded headers have one
    owner, ``POSITIONING_TRUSTED_PROXIES``.
    """
    return {"loop": "uvloop", "http": bounded_protocol(limits), "access_log": False,
            "proxy_headers": False, "server_header": False}


SERVER_SETTINGS: dict[str, Any] = server_settings()
