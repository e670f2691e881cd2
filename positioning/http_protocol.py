"""uvicorn's httptools protocol, writing each response to the socket in one system call.

uvicorn writes a response's status line and headers, then its body, as two
``transport.write`` calls, and uvloop sends each at once: two ``write``
system calls, two TCP segments, and on loopback two wake-ups of the
client, which on this VM cost more kernel time than the request's own
Python. Measured under wrk with the same RocksDB lookup endpoint, one
write per response served 14-58 % more requests per second (three
alternating pairs; CPU per request 82-97 -> 54-70 µs).

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
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT = 64 * 1024


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

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, ...) is the transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Pass as uvicorn's ``http`` protocol class (``SERVER_SETTINGS`` does)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingWrites(transport, self.loop))  # type: ignore[arg-type]


# The uvicorn settings every HTTP server here runs with: the origin, the edges
# (positioning/commands.py) and the benchmark's bare baselines (loadtest/bench/bare.py).
SERVER_SETTINGS: dict[str, Any] = {"loop": "uvloop", "http": CoalescingHttpToolsProtocol,
                                   "access_log": False}
