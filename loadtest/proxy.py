"""A TCP proxy that adds a fixed one-way delay: simulated distance on loopback.

Users are near their edge and far from the origin. The story puts one proxy
in front of each: every chunk of bytes is forwarded ``delay`` seconds after
it arrived, in both directions, in order, without slowing the stream's
throughput (a delay line, not a rate limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Link:
    name: str
    target_host: str
    target_port: int
    one_way_delay_s: float


class DelayProxy:
    def __init__(self, link: Link, listen_host: str = "127.0.0.1", listen_port: int = 0) -> None:
        self.link = link
        self.listen_host = listen_host
        self.listen_port = listen_port
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    async def start(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.listen_port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(self.link.target_host,
                                                                   self.link.target_port)
        except OSError as exc:
            log.warning("%s: cannot reach %s:%d: %r", self.link.name, self.link.target_host,
                        self.link.target_port, exc)
            client_w.close()
            return
        for reader, writer in ((client_r, upstream_w), (upstream_r, client_w)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read chunks and write each one after the delay, keeping their order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    with contextlib.suppress(OSError):
                        writer.write_eof() if writer.can_write_eof() else writer.close()
                    return
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                queue.put_nowait((loop.time() + self.link.one_way_delay_s, chunk))
                if not chunk:
                    break
            await delivering
        except (ConnectionError, OSError):
            delivering.cancel()
        finally:
            with contextlib.suppress(OSError):
                writer.close()
