"""Every phase of a request is bounded in size and time, on a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.ports import free_port
from runtime.http_protocol import HttpLimits, server_settings

LIMITS = HttpLimits(max_head_bytes=8 * 1024, max_headers=20, head_timeout_s=1.0,
                    body_timeout_s=1.0)


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"bytes": len(body), "client": request.client.host if request.client
                         else None})


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[int]:
    port = free_port()
    settings = server_settings(LIMITS)
    settings["loop"] = "asyncio"  # the test's own loop
    app = Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="off", **settings))
    task = asyncio.create_task(srv.serve())
    try:
        while not srv.started:
            await asyncio.sleep(0.01)
        yield port
    finally:
        srv.should_exit = True
        await asyncio.wait_for(task, 10)


async def exchange(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_timeout)  # until the server closes
    finally:
        writer.close()


async def test_a_normal_request_is_served() -> None:
    async with server() as port:
        answer = await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


async def test_an_oversized_head_gets_431_in_one_read_or_many() -> None:
    async with server() as port:
        big = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        assert (await exchange(port, big)).startswith(b"HTTP/1.1 431")
        # An unfinished header fed in pieces: refused before the head completes.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(40):
            writer.write(b"b" * 1024)
            await writer.drain()
            await asyncio.sleep(0.01)
        # The answer came once 8 KiB were read; the rest was read and dropped
        # (a lingering close), so the client still gets it intact.
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431")


async def test_too_many_header_fields_get_431() -> None:
    async with server() as port:
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(30))
        answer = await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431")


async def test_a_slow_head_and_a_silent_connection_are_cut_off() -> None:
    async with server() as port:
        answer = await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # never finished
        assert answer.startswith(b"HTTP/1.1 408")
        answer = await exchange(port, b"")                                   # never a byte
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


async def test_a_body_shorter_than_its_content_length_does_not_hang() -> None:
    async with server() as port:
        answer = await exchange(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                                      b"Content-Type: application/json\r\n\r\n{\"a\":")
    assert answer.startswith(b"HTTP/1.1 408")


async def test_forwarded_headers_are_not_believed_by_the_server() -> None:
    async with server() as port:
        answer = await exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                      b"X-Forwarded-For: 6.6.6.6\r\n\r\n")
    assert b'"client":"127.0.0.1"' in answer


async def test_memory_stays_bounded_under_unfinished_headers() -> None:
    async with server() as port:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        writers = []
        for _ in range(4):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ")
            writers.append(writer)
        chunk = b"c" * 65536
        for _ in range(64):  # would be 16 MB per connection
            for writer in writers:
                if not writer.is_closing():
                    writer.write(chunk)
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        for writer in writers:
            writer.close()
        grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 32 * 1024, f"the server grew {grown_kb} KiB"
