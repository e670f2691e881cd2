"""The latency proxy delays each direction by its one-way delay and keeps bytes in order."""

from __future__ import annotations

import asyncio
import time

from loadtest.proxy import DelayProxy, Link


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_round_trip_takes_twice_the_one_way_delay() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = await DelayProxy(Link("test", "127.0.0.1", port, 0.05)).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        payload = bytes(range(256)) * 400  # several chunks
        started = time.perf_counter()
        writer.write(payload)
        await writer.drain()
        received = await reader.readexactly(len(payload))
        elapsed = time.perf_counter() - started
        assert received == payload
        assert 0.1 <= elapsed < 1.0
        writer.close()
    finally:
        await proxy.stop()
        server.close()
