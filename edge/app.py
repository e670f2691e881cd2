"""The edge node's HTTP app: offers by ticket, long-poll and server-sent events.

Every request is answered from local state; the node never calls the origin.
A ticket is verified before storage is touched: malformed 400, forged 401,
expired 410. A valid ticket whose offer has not arrived is 404 "pending",
or, with ``?wait=S`` or on ``/events``, held until the materializer applies
the offer.

The handlers are module-level functions that find the node in
``request.app.state.node``; ``create_app`` builds one ``EdgeNode`` and wires
it in. Plain lookups (no query) never reach Starlette: ``FastLookupPath``
answers them from ``EdgeNode.lookups``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from edge.cors import CorsPolicy
from edge.disconnect import ClientGone, until_disconnected
from edge.fast_path import FastLookupPath
from edge.lookup import Answer, Lookups, json_answer
from edge.materializer import Materializer
from edge.metrics import EdgeMetrics
from edge.openapi import edge_openapi_document
from edge.render import Refused, Renderer, undecodable
from edge.store import OfferStore, StoreDamaged, mark_for_rebuild, open_or_rebuild
from edge.waiters import TooManyWaiters, Waiters
from runtime.fetch_tuning import FetchTuning
from runtime.kafka_connection import cluster_id
from runtime.kafka_preflight import preflight
from runtime.kafka_security import Role, kafka_access
from runtime.offer_keys import verify_keyring
from runtime.security_headers import SecurityHeaders
from runtime.settings import Settings
from runtime.state_owner import claim
from runtime.strict_parsing import decimal
from schemas.offer_signatures import OfferVerifier, refusal_reason
from schemas.tickets import TicketSigner, signer_from_settings

log = logging.getLogger(__name__)


class EdgeNode:
    """The parts of one edge node, wired together; the app holds one in ``app.state.node``.

    ``store``, ``lookups`` and ``materializer`` exist from ``start`` (the
    app's lifespan) on; before that they are None.
    """

    def __init__(self, settings: Settings, region: str, data_dir: Path,
                 signer: TicketSigner | None = None) -> None:
        self.settings = settings
        self.region = region
        self.data_dir = data_dir
        self.signer = signer or signer_from_settings(settings)
        self.metrics = EdgeMetrics(region)
        self.waiters = Waiters(settings.edge_max_waiters)
        self.store: OfferStore | None = None
        self.lookups: Lookups | None = None
        self.materializer: Materializer | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_headers = {"cache-control": "private, no-store", "x-edge-region": region}
        self.cors = CorsPolicy(settings.cors_origins)

    def use_store(self, store: OfferStore, renderer: Renderer) -> Lookups:
        """Serve lookups from ``store`` (``start`` opens the node's own), checking what it
        stored unchecked with ``renderer``; returns the Lookups."""
        self.store = store
        refused = self.metrics.refused

        def count_refused(why: str) -> None:
            if undecodable(why):
                self.metrics.undecodable.inc()
            else:
                refused.labels(self.region, refusal_reason(why)).inc()

        self.lookups = Lookups(self.signer, store, self.metrics.lookup_seconds, self.region,
                               renderer, on_refused=count_refused,
                               on_damaged=self.store_damaged)
        return self.lookups

    async def start(self) -> None:
        """Check the Kafka access, open the store and start the materializer in the background.

        Raises:
            KafkaRefused: the TLS or the credentials were refused.
            AclMismatch: the principal has more or less than the edge role.
            OfferKeyError: offers are signed and the verify file is unusable.
            StoreDamaged: no store can be made under the data directory.
            StateOfAnotherCluster: the store was made from another Kafka cluster.
        """
        settings = self.settings
        access = kafka_access(settings, Role.EDGE)
        keyring = verify_keyring(settings)
        if await preflight(settings, access):
            # The store holds offsets of one cluster's `offers` (runtime/state_owner.py);
            # a cluster that is not up yet is checked at the next start.
            claim(self.data_dir, await cluster_id(settings.bootstrap_servers, access),
                  "this edge's store")
        # A tombstone is remembered as a revocation as long as a ticket can live.
        remember_us = int((settings.ticket_ttl_s + settings.ticket_clock_skew_s) * 1e6)
        store, moved = open_or_rebuild(self.data_dir,
                                       flush_every=settings.edge_catch_up_flush_records,
                                       block_cache_mb=settings.edge_block_cache_mb,
                                       remember_revoked_us=remember_us)
        if moved is not None:
            log.error("the store was damaged or marked for a rebuild: moved to %s; a new one "
                      "is filled from the topic", moved)
        verifier = (None if keyring is None
                    else OfferVerifier(settings.offers_topic, keyring.get))
        renderer = Renderer(verifier)
        self.use_store(store, renderer)
        self.materializer = Materializer(settings.bootstrap_servers, settings.offers_topic, store,
                                         self.waiters, self.metrics,
                                         ready_lag=settings.edge_ready_lag,
                                         fetch=FetchTuning.from_settings(settings),
                                         access=access, keyring=keyring, renderer=renderer)
        self.metrics.track_waiters(lambda: self.waiters.count)
        self.metrics.track_stored(store.estimated_count)
        self._task = asyncio.create_task(self._run_materializer())

    def store_damaged(self, exc: Exception) -> Answer:
        """A read of the store failed: mark it for a rebuild, stop the node (its supervisor
        or ``positioning up`` starts it again, on a new store filled from the topic), and
        answer 503 with Retry-After meanwhile, never a guess from a damaged file."""
        log.critical("the store cannot be read (%s): marking it for a rebuild and stopping",
                     exc)
        mark_for_rebuild(self.data_dir)
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
        return json_answer(503, {"status": "unavailable",
                                 "error": "this node's store is being rebuilt; retry"},
                           ("retry-after", "1"))

    async def _run_materializer(self) -> None:
        assert self.materializer is not None
        try:
            await self.materializer.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The node cannot stay correct without it: stop the process loudly,
            # so the supervisor (or `positioning up`) restarts it from its offsets.
            log.critical("the materializer died; stopping the edge node", exc_info=True)
            os.kill(os.getpid(), signal.SIGTERM)

    async def stop(self) -> None:
        """Stop the materializer, then close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.store is not None:
            self.store.close()

    def headers(self, request: Request, **extra: str) -> dict[str, str]:
        """The headers every answer carries (CORS included), plus ``extra``."""
        headers = {**self.base_headers, **extra}
        for name, value in self.cors.headers(request.scope["headers"]):
            headers[name.decode()] = value.decode("latin-1")
        return headers

    def readiness(self) -> tuple[dict[str, Any], bool]:
        """The /readyz body and whether the node is ready (caught up with the topic).

        ``caught_up_after_s`` (seconds from connecting to Kafka to caught up)
        and ``applied_during_catch_up`` (records) are null until caught up.
        """
        m = self.materializer
        if m is None:
            return {"ready": False, "region": self.region, "caught_up_after_s": None,
                    "applied_during_catch_up": None}, False
        p = m.progress
        return {"ready": p.ready, "region": self.region,
                "lag": {str(k): max(0, t - p.next_offsets.get(k, 0)) for k, t in p.targets.items()},
                "resumed_from": {str(k): v for k, v in p.resumed_from.items()},
                "next_offsets": {str(k): v for k, v in p.next_offsets.items()},
                "applied_since_start": p.applied_since_start,
                "caught_up_after_s": p.caught_up_after_s,
                "applied_during_catch_up": p.applied_during_catch_up,
                "all_served_as_json": p.rendered}, p.ready


def _node(request: Request) -> EdgeNode:
    node: EdgeNode = request.app.state.node
    return node


def _json(body: Any, status: int, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def _respond(node: EdgeNode, request: Request, answer: Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type="application/json",
                    headers=node.headers(request, **dict(answer.headers)))


def _busy(node: EdgeNode, request: Request) -> Response:
    return _json({"status": "busy", "error": "too many waiting requests"}, 503,
                 node.headers(request, **{"retry-after": "1"}))


def _wait_seconds(node: EdgeNode, request: Request) -> float | Response:
    """``?wait`` in seconds, capped by the node's maximum, or the 400 answer."""
    if not request.scope["query_string"]:
        return 0.0
    values = request.query_params.getlist("wait")
    unknown = set(request.query_params) - {"wait"}
    if unknown or len(values) > 1:
        return _json({"status": "rejected", "error": "the only query parameter is one wait"},
                     400, node.headers(request))
    if not values:
        return 0.0
    try:
        wait = decimal(values[0], "wait")
    except ValueError as exc:
        return _json({"status": "rejected", "error": str(exc)}, 400, node.headers(request))
    return min(wait, node.settings.edge_max_wait_s)


async def get_offer(request: Request) -> Response:
    """``GET /offers/{ticket}[?wait=S]``: the offer, held up to S seconds if not there yet."""
    node = _node(request)
    lookups, store = node.lookups, node.store
    assert lookups is not None and store is not None, "the app's lifespan opens the store"
    started = time.perf_counter()
    ticket = lookups.verify(request.path_params["ticket"], started)
    if isinstance(ticket, Answer):
        return _respond(node, request, ticket)
    wait = _wait_seconds(node, request)
    if isinstance(wait, Response):
        return wait
    key = ticket.ticket_id.encode()
    stored = store.get(key)
    if stored is None and wait > 0:
        # Time left on the ticket bounds the wait too.
        wait = min(wait, max(0.0, ticket.expires_at_ms / 1000 - time.time()))
        try:
            stored = await until_disconnected(
                request, node.waiters.wait(key, wait, lambda: store.get(key)))
        except TooManyWaiters:
            return _busy(node, request)
        except ClientGone:
            # Nobody to answer; the waiter's slot is already free.
            return Response(status_code=499, headers=node.headers(request))
    return _respond(node, request, lookups.answer(ticket, stored, started))


async def offer_events(request: Request) -> Response:
    """``GET /offers/{ticket}/events``: one server-sent event with the offer, or a timeout."""
    node = _node(request)
    lookups, store = node.lookups, node.store
    assert lookups is not None and store is not None, "the app's lifespan opens the store"
    ticket = lookups.verify(request.path_params["ticket"], time.perf_counter())
    if isinstance(ticket, Answer):
        return _respond(node, request, ticket)
    key = ticket.ticket_id.encode()
    lifetime = min(node.settings.edge_sse_lifetime_s,
                   max(0.0, ticket.expires_at_ms / 1000 - time.time()))
    try:
        # Registered before the stream starts, so the offer cannot slip by.
        future = None if store.get(key) is not None else node.waiters.register(key)
    except TooManyWaiters:
        return _busy(node, request)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": positioned offers for " + key + b"\n\n"
            stored = store.get(key)
            if stored is None and future is not None:
                try:
                    stored = await asyncio.wait_for(asyncio.shield(future), lifetime)
                except TimeoutError:
                    stored = None
            if stored is None:
                yield b"event: timeout\ndata: {\"status\": \"pending\"}\n\n"
                return
            try:
                body = lookups.render(key, stored)
            except Refused:  # stored unchecked, and not to be served: none here
                yield b"event: timeout\ndata: {\"status\": \"pending\"}\n\n"
                return
            yield (b": applied_at=" + str(stored.applied_at).encode() + b"\n"
                   b"event: offer\ndata: " + body + b"\n\n")
        finally:
            if future is not None:
                node.waiters.unregister(key, future)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers=node.headers(request, **{"x-accel-buffering": "no"}))


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    node = _node(request)
    return _json({"status": "ok", "region": node.region}, 200, node.headers(request))


async def readyz(request: Request) -> Response:
    """Readiness: 200 once caught up with the offers topic, else 503 (see ``readiness``)."""
    node = _node(request)
    body, ready = node.readiness()
    return _json(body, 200 if ready else 503, node.headers(request))


async def metrics(request: Request) -> Response:
    """The node's Prometheus metrics."""
    node = _node(request)
    return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST,
                    headers=node.headers(request))


async def openapi(request: Request) -> Response:
    """The OpenAPI description of this API."""
    return _json(edge_openapi_document(), 200, _node(request).headers(request))


async def store_damaged(request: Request, exc: Exception) -> Response:
    """A route's read of the store failed (``EdgeNode.store_damaged``)."""
    node = _node(request)
    return _respond(node, request, node.store_damaged(exc))


async def http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and the like, with the headers every edge answer carries."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    extra = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return _json({"status": "error", "error": detail}, status,
                 _node(request).headers(request, **extra))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    """Start the node (store, materializer) with the server; stop it on shutdown."""
    node: EdgeNode = app.state.node
    await node.start()
    try:
        yield {}
    finally:
        await node.stop()


ROUTES = [
    Route("/offers/{ticket}", get_offer),
    Route("/offers/{ticket}/events", offer_events),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/openapi.json", openapi),
]
METRICS_ROUTE = Route("/metrics", metrics)  # on the public port only when the setting says so


def create_app(settings: Settings, region: str, data_dir: Path,
               signer: TicketSigner | None = None) -> SecurityHeaders:
    """The edge's ASGI app: a fast path for plain lookups in front of the Starlette app,
    every answer with the security headers (runtime/security_headers.py).

    The returned app's ``state`` is the Starlette app's, holding ``node``.
    ``signer`` defaults to the one the settings describe.
    """
    node = EdgeNode(settings, region, data_dir, signer)
    routes = [*ROUTES, METRICS_ROUTE] if settings.edge_metrics_port_offset == 0 else ROUTES
    starlette = Starlette(routes=routes, lifespan=lifespan,
                          exception_handlers={HTTPException: http_error, 500: http_error,
                                              StoreDamaged: store_damaged})
    # No redirect from /offers/<ticket>/ to /offers/<ticket>: it would echo the
    # ticket in a Location header, without the edge's headers.
    starlette.router.redirect_slashes = False
    starlette.state.node = node
    fast = FastLookupPath(starlette, lambda: node.lookups, node.base_headers, node.cors)
    fast.state = starlette.state  # type: ignore[attr-defined]
    return SecurityHeaders(fast)
