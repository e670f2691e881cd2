"""Bare Starlette endpoints on the same server stack: the baselines the benchmarks divide by.

``python -m loadtest.bench.bare --kind edge --port N`` answers ``GET
/offers/{ticket}`` with a fixed offer-sized JSON body; ``--kind origin``
answers ``POST /login`` with a fixed 202. Same uvicorn settings as the real
components (``SERVER_SETTINGS``: uvloop, httptools writing each response in one call, no
access log).
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.offers import compute_offer
from engine.state import new_user_view
from runtime.http_protocol import SERVER_SETTINGS
from schemas.events import login_event
from schemas.tickets import Ticket

HEADERS = {"cache-control": "private, no-store", "x-edge-region": "bare"}


def edge_app() -> Starlette:
    ticket = Ticket(token="k" * 90, ticket_id="x" * 22, kid="bench", issued_at_ms=1, expires_at_ms=2)
    login = login_event(ticket, "bench-user", "81.2.69.160", accepted_at_us=ticket.issued_at_us)
    body = orjson.dumps(compute_offer(login, new_user_view(), created_at=1))

    async def offer(request: Request) -> Response:
        return Response(body, media_type="application/json", headers=HEADERS)

    return Starlette(routes=[Route("/offers/{ticket}", offer), Route("/healthz", offer)])


def origin_app() -> Starlette:
    body = orjson.dumps({"ticket": "k" * 90, "ticket_id": "x" * 22, "expires_at": 1,
                         "login_accepted_at": 1})

    async def login(request: Request) -> Response:
        await request.body()
        return Response(body, status_code=202, media_type="application/json", headers=HEADERS)

    async def healthz(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/login", login, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["edge", "origin"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = edge_app() if args.kind == "edge" else origin_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **SERVER_SETTINGS)


if __name__ == "__main__":
    main()
