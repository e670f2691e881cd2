"""The origin's HTTP app: ``POST /login``, ``POST /offers/sync``, the web client.

``POST /login`` answers 202 with a ticket only after Kafka acknowledged the
login event; the offer itself is computed by the worker and read from an
edge. ``POST /offers/sync`` is the old way, computing the offer inside the
request with the same engine, kept as the baseline the story compares with.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from engine.offers import compute_offer, simulate_model_latency
from engine.state import new_user_view
from origin.fast_path import FastLoginPath
from origin.openapi import openapi_document
from origin.publisher import LoginPublisher, PublisherUnavailable
from origin.requests import (
    BadRequest,
    client_address,
    idempotency_key,
    parse_login,
    read_json_body,
)
from runtime.clock import now_us
from runtime.settings import Settings
from schemas.codec import login_codec
from schemas.events import login_event
from schemas.tickets import TicketSigner, signer_from_settings

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "private, no-store"}


class OriginMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.logins = Counter("origin_logins_total", "Logins by outcome", ["outcome"],
                              registry=self.registry)
        self.login_seconds = Histogram(
            "origin_login_seconds", "Time to accept a login (Kafka ack included)",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry)



def create_app(settings: Settings, signer: TicketSigner | None = None) -> FastLoginPath:
    signer = signer or signer_from_settings(settings)
    publisher = LoginPublisher(settings.bootstrap_servers, settings.logins_topic,
                               timeout_s=settings.login_timeout_s,
                               linger_ms=settings.origin_linger_ms)
    metrics = OriginMetrics()
    codec = login_codec()
    accepted = metrics.logins.labels("accepted").inc
    observe_login = metrics.login_seconds.observe

    def error(exc: BadRequest) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=NO_STORE)

    async def login(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_json_body(request)
            req = parse_login(body, client_address(request, settings.trusted_proxies),
                              request.headers.get("user-agent"))
            key = idempotency_key(request)
        except BadRequest as exc:
            metrics.logins.labels("rejected").inc()
            return error(exc)
        # With an Idempotency-Key the ticket id is derived from it: a retry gets
        # the same ticket id, and the worker counts the login once.
        ticket = signer.issue(raw_id=None if key is None else signer.ticket_id_for(req.user_id, key))
        event = login_event(ticket, req.user_id, req.ip, accepted_at_us=now_us(),
                            user_agent=req.user_agent)
        try:
            await publisher.publish(req.user_id.encode(), codec.encode(event))
        except PublisherUnavailable as exc:
            metrics.logins.labels("unavailable").inc()
            log.warning("login not accepted: %s", exc)
            message = ("the event log did not acknowledge the login in time; retry with the "
                       "same Idempotency-Key" if key is not None else
                       "the event log did not acknowledge the login in time; the login may "
                       "still be processed. Retry with an Idempotency-Key header to make "
                       "retries safe")
            return JSONResponse({"error": message, "may_be_processed": True},
                                status_code=503, headers={"Retry-After": "1", **NO_STORE})
        accepted()
        observe_login(time.perf_counter() - started)
        return Response(
            orjson.dumps({"ticket": ticket.token, "ticket_id": ticket.ticket_id,
                          "expires_at": ticket.expires_at_us,
                          "login_accepted_at": event["login_accepted_at"]}),
            status_code=202, media_type="application/json", headers=NO_STORE)

    async def offer_sync(request: Request) -> Response:
        try:
            body = await read_json_body(request)
            req = parse_login(body, client_address(request, settings.trusted_proxies),
                              request.headers.get("user-agent"))
        except BadRequest as exc:
            return error(exc)
        ticket = signer.issue()
        event = login_event(ticket, req.user_id, req.ip, accepted_at_us=now_us(),
                            user_agent=req.user_agent)
        await simulate_model_latency(settings.model_latency_ms)
        offer = compute_offer(event, new_user_view(), created_at=now_us())
        return JSONResponse(offer, headers=NO_STORE)

    async def index(request: Request) -> Response:
        page = resources.files("origin").joinpath("static", "index.html").read_text()
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def client_config(request: Request) -> Response:
        """What the web client needs: where the edges are."""
        edges = {region: f"http://{settings.edge_host}:{port}"
                 for region, port in settings.edge_ports.items()}
        return JSONResponse({"edges": edges, "model_latency_ms": settings.model_latency_ms},
                            headers={"Cache-Control": "no-cache"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "kafka": "connected" if publisher.ready else "connecting",
                             "model_latency_ms": settings.model_latency_ms})

    async def readyz(request: Request) -> Response:
        ok = publisher.ready
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await publisher.start()
        try:
            yield {}
        finally:
            await publisher.stop()

    routes = [
        Route("/", index),
        Route("/login", login, methods=["POST"]),
        Route("/offers/sync", offer_sync, methods=["POST"]),
        Route("/config.json", client_config),
        Route("/openapi.json", openapi),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    # No CORS middleware: the web client is served by the origin itself, and
    # every middleware layer costs each login.
    starlette = Starlette(routes=routes, lifespan=lifespan)
    starlette.state.publisher = publisher
    starlette.state.signer = signer
    app = FastLoginPath(starlette, login)
    app.state = starlette.state  # type: ignore[attr-defined]
    return app
