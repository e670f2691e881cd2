"""The origin's HTTP app: ``POST /login``, ``POST /offers/sync``, the web client.

``POST /login`` answers 202 with a ticket only after Kafka acknowledged the
login event; the offer itself is computed by the worker and read from an
edge. ``POST /offers/sync`` is the old way, computing the offer inside the
request with the same engine, kept as the baseline the story compares with.

The two POST handlers are methods of ``Logins``, which holds what they need
(``POST /login`` is also called by ``FastLoginPath``, outside Starlette's
routing, where ``request.app`` is not set). The other handlers are
module-level functions reading ``request.app.state``: ``settings``,
``publisher``, ``signer``, ``metrics`` and ``logins``, set by ``create_app``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from engine.offers import compute_offer, simulate_model_latency
from engine.state import new_user_view
from origin.fast_path import FastLoginPath
from origin.metrics import OriginMetrics
from origin.openapi import openapi_document
from origin.publisher import LoginPublisher, PublisherUnavailable
from origin.regions import edge_region, region_cookie
from origin.requests import (
    BadRequest,
    client_address,
    idempotency_key,
    may_choose_ip,
    parse_login,
    read_json_body,
)
from runtime.clock import now_us
from runtime.kafka_preflight import preflight
from runtime.kafka_security import Role, kafka_access
from runtime.security_headers import SecurityHeaders
from runtime.settings import Settings, env_var
from schemas.codec import login_codec
from schemas.events import login_event
from schemas.tickets import TicketSigner, signer_from_settings

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "private, no-store"}


def _error(exc: BadRequest) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=NO_STORE)


class Logins:
    """Accepting logins (``POST /login``) and the synchronous baseline (``POST /offers/sync``)."""

    def __init__(self, settings: Settings, publisher: LoginPublisher, signer: TicketSigner,
                 metrics: OriginMetrics) -> None:
        self.settings = settings
        self.publisher = publisher
        self.signer = signer
        self.metrics = metrics
        self._trusted_proxies = settings.trusted_proxies
        self._ip_mode = settings.login_ip_from_body
        self._regions = tuple(settings.edge_ports)
        if not self._regions:
            raise ValueError(f"{env_var('edges')} lists no edge: the origin names each "
                             "user's edge region in the login answer")
        self._codec = login_codec()
        self._accepted = metrics.logins.labels("accepted").inc
        self._observe_login = metrics.login_seconds.observe

    async def login(self, request: Request) -> Response:
        """202 with a ticket once Kafka acknowledged the login; 4xx for a bad request,
        503 if Kafka did not acknowledge in time."""
        started = time.perf_counter()
        try:
            body = await read_json_body(request)
            client = client_address(request, self._trusted_proxies)
            req = parse_login(body, client, request.headers.get("user-agent"),
                              may_choose_ip(self._ip_mode, client))
            key = idempotency_key(request)
        except BadRequest as exc:
            self.metrics.logins.labels("rejected").inc()
            return _error(exc)
        signer = self.signer
        # With an Idempotency-Key the ticket id is derived from it: a retry gets
        # the same ticket id, and the worker counts the login once.
        ticket = signer.issue(raw_id=None if key is None else signer.ticket_id_for(req.user_id, key))
        event = login_event(ticket, req.user_id, req.ip, accepted_at_us=now_us(),
                            user_agent=req.user_agent)
        try:
            await self.publisher.publish(req.user_id.encode(), self._codec.encode(event))
        except PublisherUnavailable as exc:
            self.metrics.logins.labels("unavailable").inc()
            log.warning("login not accepted: %s", exc)
            message = ("the event log did not acknowledge the login in time; retry with the "
                       "same Idempotency-Key" if key is not None else
                       "the event log did not acknowledge the login in time; the login may "
                       "still be processed. Retry with an Idempotency-Key header to make "
                       "retries safe")
            return JSONResponse({"error": message, "may_be_processed": True},
                                status_code=503, headers={"Retry-After": "1", **NO_STORE})
        self._accepted()
        self._observe_login(time.perf_counter() - started)
        # The edge region serving this user (origin/regions.py): in the body for
        # any client, in a cookie for browsers, by which the front door routes.
        region = edge_region(req.ip, self._regions)
        return Response(
            orjson.dumps({"ticket": ticket.token, "ticket_id": ticket.ticket_id,
                          "expires_at": ticket.expires_at_us,
                          "login_accepted_at": event["login_accepted_at"],
                          "region": region}),
            status_code=202, media_type="application/json",
            headers={**NO_STORE, "Set-Cookie": region_cookie(region)})

    async def offer_sync(self, request: Request) -> Response:
        """200 with the offer computed inside the request (the baseline); 4xx for a bad request."""
        try:
            body = await read_json_body(request)
            client = client_address(request, self._trusted_proxies)
            req = parse_login(body, client, request.headers.get("user-agent"),
                              may_choose_ip(self._ip_mode, client))
        except BadRequest as exc:
            return _error(exc)
        ticket = self.signer.issue()
        event = login_event(ticket, req.user_id, req.ip, accepted_at_us=now_us(),
                            user_agent=req.user_agent)
        await simulate_model_latency(self.settings.model_latency_ms)
        offer = compute_offer(event, new_user_view(), created_at=now_us())
        return JSONResponse(offer, headers=NO_STORE)


def page_policy(settings: Settings) -> str:
    """The web client's Content-Security-Policy: its own script and style files only (no
    inline script or style), connections to itself and the edges, never framed."""
    edges = " ".join(sorted({f"http://{settings.edge_host}:{port}"
                             for port in settings.edge_ports.values()}))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self' {edges}; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


async def index(request: Request) -> Response:
    """The web client's page."""
    page = resources.files("origin").joinpath("static", "index.html").read_text()
    policy = page_policy(request.app.state.settings)
    return HTMLResponse(page, headers={"Cache-Control": "no-cache",
                                       "Content-Security-Policy": policy})


def _static(name: str, media_type: str) -> Route:
    """A file of the web client (origin/static), read once."""
    body = resources.files("origin").joinpath("static", name).read_bytes()

    async def serve(request: Request) -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return Route(f"/{name}", serve)


async def client_config(request: Request) -> Response:
    """What the web client needs: where the edges are."""
    settings: Settings = request.app.state.settings
    edges = {region: f"http://{settings.edge_host}:{port}"
             for region, port in settings.edge_ports.items()}
    return JSONResponse({"edges": edges, "model_latency_ms": settings.model_latency_ms},
                        headers={"Cache-Control": "no-cache"})


async def openapi(request: Request) -> Response:
    """The OpenAPI description of this API."""
    return JSONResponse(openapi_document())


async def healthz(request: Request) -> Response:
    """Liveness, with whether Kafka is connected yet."""
    state = request.app.state
    return JSONResponse({"status": "ok",
                         "kafka": "connected" if state.publisher.ready else "connecting",
                         "model_latency_ms": state.settings.model_latency_ms})


async def readyz(request: Request) -> Response:
    """200 once connected to Kafka, else 503."""
    ok = request.app.state.publisher.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


async def metrics_endpoint(request: Request) -> Response:
    """The origin's Prometheus metrics."""
    metrics: OriginMetrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Connect the publisher with the server (or keep trying); stop it on shutdown."""
    publisher: LoginPublisher = app.state.publisher
    # A missing or refused certificate, password or ACL stops the origin here, loudly.
    publisher.access = kafka_access(app.state.settings, Role.ORIGIN)
    await preflight(app.state.settings, publisher.access)
    await publisher.start()
    try:
        yield {}
    finally:
        await publisher.stop()


def create_app(settings: Settings, signer: TicketSigner | None = None) -> SecurityHeaders:
    """The origin's ASGI app: a fast path for ``POST /login`` in front of the Starlette app,
    every answer with the security headers (runtime/security_headers.py).

    The returned app's ``state`` is the Starlette app's (see the module
    docstring). ``signer`` defaults to the one the settings describe.
    """
    signer = signer or signer_from_settings(settings)
    publisher = LoginPublisher(settings.bootstrap_servers, settings.logins_topic,
                               timeout_s=settings.login_timeout_s,
                               linger_ms=settings.origin_linger_ms,
                               access=None)  # resolved by the lifespan, which may refuse
    metrics = OriginMetrics()
    logins = Logins(settings, publisher, signer, metrics)
    routes = [
        Route("/", index),
        _static("app.js", "text/javascript"),
        _static("app.css", "text/css"),
        Route("/login", logins.login, methods=["POST"]),
        Route("/offers/sync", logins.offer_sync, methods=["POST"]),
        Route("/config.json", client_config),
        Route("/openapi.json", openapi),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    # No CORS middleware: the web client is served by the origin itself, and
    # every middleware layer costs each login.
    starlette = Starlette(routes=routes, lifespan=lifespan)
    state = starlette.state
    state.settings = settings
    state.publisher = publisher
    state.signer = signer
    state.metrics = metrics
    state.logins = logins
    fast = FastLoginPath(starlette, logins.login)
    fast.state = state  # type: ignore[attr-defined]
    return SecurityHeaders(fast)
