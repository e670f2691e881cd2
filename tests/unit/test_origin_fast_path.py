"""POST /login takes the plain ASGI path to the login handler; everything else reaches Starlette."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from origin.fast_path import FastLoginPath


async def login(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"via": "fast", "user_id": body["user_id"],
                         "client": request.client.host if request.client else None},
                        status_code=202)


async def routed_login(request: Request) -> Response:
    return PlainTextResponse("routed", status_code=299)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def client() -> httpx.AsyncClient:
    starlette = Starlette(routes=[Route("/login", routed_login, methods=["POST"]),
                                  Route("/healthz", healthz)])
    transport = httpx.ASGITransport(app=FastLoginPath(starlette, login),
                                    client=("10.1.2.3", 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://origin")


async def test_post_login_goes_to_the_handler_with_its_body_and_client() -> None:
    async with client() as http:
        response = await http.post("/login", json={"user_id": "ada"})
    assert response.status_code == 202
    assert response.json() == {"via": "fast", "user_id": "ada", "client": "10.1.2.3"}


async def test_other_methods_and_paths_reach_starlette() -> None:
    async with client() as http:
        assert (await http.get("/login")).status_code == 405
        assert (await http.get("/healthz")).text == "ok"
        assert (await http.post("/login/")).status_code != 202
        assert (await http.get("/nowhere")).status_code == 404
