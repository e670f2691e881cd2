"""The offer worker: a faust-streaming app that turns logins into offers.

One agent reads ``logins`` (keyed by user id). For each login it decodes the
event, counts the login in the user's state (a RocksDB-backed table) and
computes the offer, all without awaiting, so a user's logins update the
state in order (``LoginProcessor.begin``). The slow part, the simulated
model call and producing the offer, runs in a bounded pool of tasks, so
model latency does not serialise throughput.

Delivery is at-least-once with idempotent effects, which we chose over
Faust's ``exactly_once`` (Kafka transactions; docs/decisions/):

- acks are manual (``stream.noack()``); an event is finished only after its
  offer (or its dead letter) is acknowledged by the broker, however long
  that takes; sends are retried without end and the worker reports itself
  stuck meanwhile (``/status/`` on its web port, ``/metrics``);
- what is committed is decided by the worker's ``OffsetLedger``, not by
  Faust: only offsets below the oldest unfinished event (pipeline/offset_ledger.py);
- the user state remembers the offset of the last counted login (a user's
  logins share one partition), so a replayed login is never counted twice,
  and every live ticket, so a retried login (same ticket id, from the
  ``Idempotency-Key``) is not counted twice either;
- the offer is keyed by ticket on a compacted topic, so a replay overwrites
  it with the same offer.

Poison messages (undecodable bytes, an unknown schema, a login the engine
refuses or fails on) go to ``logins.dlq`` with the error in headers, and the
stream goes on. Expired offers get tombstones on ``offers``, found by
reading ``offers`` itself (pipeline/expiry.py), so a restart or a partition
move loses none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
import orjson
from faust.types import TP, StreamT
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from engine.offers import compute_offer, shown_categories, simulate_model_latency
from engine.state import (
    Position,
    is_retry,
    next_state,
    remembered_created_at,
    retried_state,
    view_for_login,
)
from engine.validation import LoginRejected, validate_login
from pipeline.expiry import Expirer
from pipeline.gap_reader import SourceRecord, read_range
from pipeline.offset_ledger import Admission, OffsetLedger
from pipeline.transport import broker_url
from runtime.clock import now_us
from runtime.fetch_tuning import FetchTuning
from runtime.settings import Settings
from schemas.codec import DecodeError, login_codec, offer_codec
from schemas.events import offer_headers

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)



def load_state(stored: bytes | None) -> dict[str, Any] | None:
    """A user's state from its table value (JSON bytes, written with orjson.dumps)."""
    return orjson.loads(stored) if stored else None


class PoisonMessage(Exception):
    """A login that cannot be processed; it goes to the dead-letter topic."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


@dataclass
class Planned:
    """What one login leads to: its offer, and whether it counted as a visit."""

    offer: dict[str, Any]
    counted: bool = True


class LoginProcessor:
    """The ordered half of a login: decode, count it in the user's state, compute the offer.

    ``users`` maps user id to the state's JSON bytes: the worker's Faust
    table, or any mutable mapping (the unit tests use a dict).
    """

    def __init__(self, users: MutableMapping[str, Any]) -> None:
        self.users = users
        self.codec = login_codec()

    def begin(self, value: bytes | None, position: Position) -> Planned:
        """Raises PoisonMessage for anything that must go to the dead-letter topic."""
        try:
            login = self.codec.decode(value)  # type: ignore[arg-type]
        except DecodeError as exc:
            raise PoisonMessage("decode", exc) from exc
        try:
            validate_login(login)
        except LoginRejected as exc:
            raise PoisonMessage("validate", exc) from exc
        user_id = login["user_id"]
        state = load_state(self.users.get(user_id))
        view, replayed = view_for_login(state, login["ticket_id"], position)
        # A replay gets the time its offer was first made: the same offer, to the byte.
        created_at = (replayed and remembered_created_at(state, login["ticket_id"])) or now_us()
        try:
            offer = compute_offer(login, view, created_at=created_at)
        except Exception as exc:  # the engine failed on this login
            raise PoisonMessage("engine", exc) from exc
        if replayed:
            if state is not None and is_retry(state, login["ticket_id"], position):
                retried, offer["expires_at"] = retried_state(
                    state, login["ticket_id"], position, login["expires_at"])
                self.users[user_id] = orjson.dumps(retried)
            return Planned(offer, counted=False)
        self.users[user_id] = orjson.dumps(next_state(
            state, login["ticket_id"], view, position, login["login_accepted_at"],
            offer["country"], shown_categories(offer), login["expires_at"], created_at))
        return Planned(offer)


class WorkerMetrics:
    """The worker's Prometheus metrics (``/metrics`` on its web port)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.logins = Counter("worker_logins_total", "Logins by outcome", ["outcome"], registry=r)
        self.send_failures = Counter("worker_send_failures_total",
                                     "Produce attempts that failed and are retried", registry=r)
        self.oldest_send_s = Gauge("worker_oldest_unacked_send_seconds",
                                   "Age of the oldest record not yet acknowledged by Kafka",
                                   registry=r)
        self.in_flight = Gauge("worker_logins_in_flight", "Logins begun and not finished",
                               registry=r)
        self.offset_gaps = Counter("worker_offset_gaps_total",
                                   "Offsets Faust did not hand over (sought back)", registry=r)
        self.expiry_queue = Gauge("worker_offers_awaiting_expiry",
                                  "Live offers in this worker's expiry partitions", registry=r)
        self.tombstones = Counter("worker_tombstones_total",
                                  "Tombstones produced for expired offers", registry=r)


class Deliveries:
    """Produce records and wait for the broker's ack, retrying for as long as it takes.

    Nothing gives up: a login is finished only when its record is acked. The
    age of the oldest pending send is what says the worker is stuck.
    """

    def __init__(self, app: faust.App, metrics: WorkerMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._pending: dict[int, float] = {}
        self._next_id = 0

    def oldest_pending_s(self) -> float:
        if not self._pending:
            return 0.0
        return time.monotonic() - min(self._pending.values())

    async def send(self, topic: str, key: bytes, value: bytes | None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        """Straight to the app's producer: Faust's Topic.send would attach the
        record to the current event (sent only at ack, which here waits for
        this very send) and costs a good share of the worker's CPU per record."""
        send_id = self._next_id
        self._next_id += 1
        self._pending[send_id] = time.monotonic()
        attempt = 0
        try:
            while True:
                try:
                    delivery = await self.app.producer.send(topic, key, value, None, None, headers)
                    await delivery
                    return
                except Exception as exc:  # the broker or network failed: retry, loudly
                    delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                    attempt += 1
                    self.metrics.send_failures.inc()
                    log.error("send to %s failed (attempt %d, %r); retrying in %.1fs",
                              topic, attempt, exc, delay)
                    await asyncio.sleep(delay)
        finally:
            del self._pending[send_id]


class ConsumerWedged(RuntimeError):
    """Finished work has not been committed for too long: the Kafka consumer is stuck."""


def create_app(settings: Settings,
               on_wedged: Callable[[BaseException], None] | None = None) -> faust.App:
    """Build the Faust app for these settings (``pipeline.app`` builds it from the env).

    ``on_wedged`` is called, from the event loop, when finished logins have
    waited ``worker_commit_stall_s`` for a commit: aiokafka's group
    coordinator was seen to hang for good after broker restarts, the worker
    then reads nothing more. ``positioning worker`` passes a callback that
    replaces the process (nothing unfinished was committed, so a fresh worker
    starts exactly there); without one the app crashes.
    """
    app = faust.App(
        settings.worker_id,
        broker=broker_url(settings.bootstrap_servers, FetchTuning.from_settings(settings)),
        # Faust's RocksDB store, keeping its tuning when it reopens (pipeline/state_store.py).
        store="positioning://",
        datadir=str(settings.worker_data_dir or settings.home / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        producer_acks=-1,
        web_enabled=settings.worker_web_port > 0,
        web_port=max(settings.worker_web_port, 1),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        # Frequent commits keep the replay after a crash short.
        broker_commit_interval=0.2,
        # A crashed worker's partitions move on after 10 s, not a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        # A couple of milliseconds lets concurrent offers share a produce request.
        producer_linger=0.002,
        producer_max_batch_size=256 * 1024,
    )
    logins = app.topic(settings.logins_topic, key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    # Values are the state's JSON bytes, encoded here with orjson: the same bytes
    # Faust's json serializer writes, at a fraction of its per-login cost.
    users = app.Table("user-state", default=None, partitions=settings.partitions,
                      key_type=str, value_type=bytes)
    # The transport commits only what the ledger allows (pipeline/transport.py).
    ledger = OffsetLedger(settings.logins_topic)
    app.offset_ledger = ledger  # type: ignore[attr-defined]
    processor = LoginProcessor(users)
    metrics = WorkerMetrics()
    deliveries = Deliveries(app, metrics)
    encoder = offer_codec()
    limiter = asyncio.Semaphore(settings.worker_concurrency)
    in_flight: set[asyncio.Task[None]] = set()

    async def tombstone(ticket_id: bytes) -> None:
        await deliveries.send(settings.offers_topic, ticket_id, None)

    expirer = Expirer(settings.bootstrap_servers, settings.offers_topic,
                      f"{settings.worker_id}-expiry", tombstone, settings.expiry_sweep_s,
                      on_tombstone=metrics.tombstones.inc)

    async def dead_letter(source: SourceRecord, error: Exception, stage: str) -> None:
        headers = [
            ("error.type", type(error).__name__.encode()),
            ("error.message", str(error).encode()[:4096]),
            ("error.stage", stage.encode()),
            ("source.topic", source.topic.encode()),
            ("source.partition", str(source.partition).encode()),
            ("source.offset", str(source.offset).encode()),
            ("dead_lettered_at", str(now_us()).encode()),
        ]
        log.warning("dead letter from %s[%d]@%d: %s: %s", source.topic, source.partition,
                    source.offset, type(error).__name__, error)
        metrics.logins.labels("dead_lettered").inc()
        await deliveries.send(settings.dlq_topic, source.key, source.value, headers)  # type: ignore[arg-type]

    async def finish(source: SourceRecord, planned: Planned, generation: int,
                     ack: Callable[[], Awaitable[Any]] | None) -> None:
        """The slow half of one login: model call, then produce the offer, then ack."""
        offer = planned.offer
        try:
            await simulate_model_latency(settings.model_latency_ms)
            try:
                value = encoder.encode(offer)
            except Exception as exc:  # the engine produced an invalid offer
                log.exception("offer for ticket %s does not encode", offer["ticket_id"])
                await dead_letter(source, exc, "engine")
            else:
                # Headers let edges index and measure the offer without decoding it.
                headers = offer_headers(offer)
                await deliveries.send(settings.offers_topic, offer["ticket_id"].encode(),
                                      value, headers)
                metrics.logins.labels("positioned" if planned.counted else "repeated").inc()
            # Not in a finally: a send cut short by shutdown stays unfinished, so the
            # login is consumed again instead of being committed without its offer.
            ledger.finish(TP(source.topic, source.partition), source.offset, generation)
            if ack is not None:
                await ack()
        finally:
            limiter.release()

    async def handle(source: SourceRecord, generation: int,
                     ack: Callable[[], Awaitable[Any]] | None) -> None:
        """Begin one admitted login in order; its slow half goes to the task pool."""
        await limiter.acquire()
        try:
            planned = processor.begin(source.value, Position(source.partition, source.offset))
        except Exception as exc:
            if isinstance(exc, PoisonMessage):
                log.warning("poison message (%s): %r", exc.stage, exc.error)
                error, stage = exc.error, exc.stage
            else:  # a bug: keep the stream alive, keep the message
                log.exception("unexpected error on %s[%d]", source.topic, source.partition)
                error, stage = exc, "worker"
            try:
                await dead_letter(source, error, stage)
                ledger.finish(TP(source.topic, source.partition), source.offset, generation)
                if ack is not None:
                    await ack()
            finally:
                limiter.release()
            return
        task = asyncio.create_task(finish(source, planned, generation, ack))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    async def fill_gap(tp: TP, end: int) -> None:
        """Read and handle the offsets Faust skipped before ``end`` (pipeline/gap_reader.py)."""
        metrics.offset_gaps.inc()
        start = ledger.expected(tp)
        for record in await read_range(settings.bootstrap_servers, tp.topic, tp.partition,
                                       start, end):
            admission, generation = ledger.admit(tp, record.offset)
            if admission is Admission.PROCESS:
                await handle(record, generation, None)
        if ledger.expected(tp) != end:  # offsets with no record (none in `logins`): step over
            ledger.step_to(tp, end)

    @app.agent(logins)
    async def position(stream: StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            admission, generation = ledger.admit(message.tp, message.offset)
            if admission is Admission.GAP:
                await fill_gap(message.tp, message.offset)
                admission, generation = ledger.admit(message.tp, message.offset)
            if admission is Admission.SKIP:
                await manual.ack(event)
                continue
            source = SourceRecord(message.topic, message.partition, message.offset,
                                  message.key, message.value)
            await handle(source, generation, partial(manual.ack, event))

    @app.task
    async def expire_offers() -> None:
        """Tombstone expired offers for as long as the worker runs; a fault stops it loudly."""
        try:
            await expirer.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the expiry consumer failed")
            await app.crash(exc)

    @app.timer(interval=1.0)
    async def commit_finished() -> None:
        """Commit progress Faust does not see (its own commit runs only on its acks)."""
        if ledger.uncommitted() and ledger.commit_started_at is None and not app.rebalancing:
            await app.consumer.commit_finished()

    @app.timer(interval=5.0)
    async def watch_commits() -> None:
        """Stop a worker whose consumer no longer commits what it finished."""
        stalled = ledger.commit_stalled_s()
        if stalled <= settings.worker_commit_stall_s:
            return
        wedged = ConsumerWedged(f"finished logins have waited {stalled:.0f} s for a commit")
        log.critical("%s: the Kafka consumer is stuck; replacing the worker", wedged)
        if on_wedged is not None:
            on_wedged(wedged)
        else:
            await app.crash(wedged)

    def status() -> tuple[bool, dict[str, Any]]:
        oldest = deliveries.oldest_pending_s()
        stuck = oldest > settings.worker_stuck_after_s
        stalled = ledger.commit_stalled_s()
        stuck = stuck or stalled > settings.worker_stuck_after_s
        body = {"ready": not stuck and app.rebalancing is False,
                "stuck": stuck, "oldest_unacked_send_s": round(oldest, 3),
                "commit_stalled_s": round(stalled, 3),
                "in_flight": ledger.in_flight(), "offset_gaps": ledger.gaps,
                "offers_awaiting_expiry": len(expirer.index),
                "expiry_loading_partitions": sorted(expirer.index.loading)}
        return bool(body["ready"]), body

    @app.page("/status/")
    async def status_page(web: Any, request: Any) -> Any:
        ready, body = status()
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics/")
    async def metrics_page(web: Any, request: Any) -> Any:
        metrics.oldest_send_s.set(deliveries.oldest_pending_s())
        metrics.in_flight.set(ledger.in_flight())
        metrics.expiry_queue.set(len(expirer.index))
        return web.bytes(generate_latest(metrics.registry),
                         content_type="text/plain; version=0.0.4")

    return app
