"""Responses go to the socket in one write per event-loop turn, in order, and nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from devstack.ports import free_port
from runtime.http_protocol import FLUSH_AT, BoundedHttpToolsProtocol, CoalescingWrites


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _next_turn() -> None:
    await asyncio.sleep(0)


async def test_writes_of_one_turn_reach_the_transport_as_one_at_the_end_of_the_turn() -> None:
    transport = RecordingTransport()
    writes = CoalescingWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    writes.write(b"{}")
    assert transport.writes == []
    await _next_turn()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_writes_of_later_turns_follow_in_order() -> None:
    transport = RecordingTransport()
    writes = CoalescingWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    for chunk in (b"a", b"b"):
        writes.write(chunk)
        await _next_turn()
    writes.write(b"c")
    writes.write(b"d")
    await _next_turn()
    assert transport.writes == [b"a", b"b", b"cd"]


async def test_close_sends_what_is_pending_first() -> None:
    transport = RecordingTransport()
    writes = CoalescingWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"last words")
    writes.close()
    assert transport.writes == [b"last words"] and transport.closed
    await _next_turn()  # the scheduled flush finds nothing left to send
    assert transport.writes == [b"last words"]


async def test_a_large_body_is_not_held_back() -> None:
    transport = RecordingTransport()
    writes = CoalescingWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"h")
    writes.write(b"x" * FLUSH_AT)
    assert transport.writes == [b"h" + b"x" * FLUSH_AT]


async def test_nothing_is_written_to_a_transport_that_closed_meanwhile() -> None:
    transport = RecordingTransport()
    writes = CoalescingWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    writes.write(b"too late")
    transport.closed = True
    await _next_turn()
    assert transport.writes == []
    assert writes.get_extra_info("peername") == "info:peername"


def _app() -> Starlette:
    async def small(request: Request) -> Response:
        return JSONResponse({"n": int(request.path_params["n"])})

    async def streamed(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                yield (b"%d" % i) * 50_000
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="text/plain")

    return Starlette(routes=[Route("/small/{n:int}", small), Route("/streamed", streamed)])


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=port, log_level="warning",
                                           http=BoundedHttpToolsProtocol, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not server.started:
            assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_a_real_server_answers_keep_alive_and_streamed_requests_intact() -> None:
    async with _server() as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        for n in range(20):  # one pooled keep-alive connection, request after request
            response = await http.get(f"/small/{n}")
            assert response.status_code == 200 and response.json() == {"n": n}
        answers = await asyncio.gather(*(http.get(f"/small/{n}") for n in range(50)))
        assert [a.json()["n"] for a in answers] == list(range(50))
        streamed = await http.get("/streamed")
        assert streamed.content == b"".join((b"%d" % i) * 50_000 for i in range(5))
