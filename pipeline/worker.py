"""The offer worker: a faust-streaming app that turns logins into offers.

One agent reads ``logins`` (keyed by user id) and hands each event to the
``LoginProcessor``. Its ordered half (``begin``) decodes the event, counts the
login in the user's state (a RocksDB-backed table) and computes the offer,
all without awaiting, so a user's logins update the state in order. Its slow
half (``finish``), the simulated model call and producing the offer, runs in
a bounded pool of tasks, so model latency does not serialise throughput.

Delivery is at-least-once with idempotent effects, which we chose over
Faust's ``exactly_once`` (Kafka transactions; docs/decisions/):

- acks are manual (``stream.noack()``); an event is finished only after its
  offer (or its dead letter) is acknowledged by the broker, however long
  that takes; sends are retried without end and the worker reports itself
  stuck meanwhile (``/status/`` on its web port, ``/metrics/``);
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
stream goes on, unless ``breaker_dead_letters`` of one error type come in a
row: that is a systematic fault, and the circuit breaker (pipeline/breaker.py)
stops consumption and reports the worker unhealthy instead. Expired offers
get tombstones on ``offers``, found by reading ``offers`` itself
(pipeline/expiry.py), so a restart or a partition move loses none.

The web server (``worker_web_port``; 0 turns it off) serves ``/status/``,
``/metrics/`` and the readiness page ``/ready/`` (pipeline/readiness.py says
what it answers and how launchers know its port).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

import faust
import orjson
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, AgentT, StreamT
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
from pipeline.breaker import DeadLetterBreaker
from pipeline.expiry import Expirer
from pipeline.gap_reader import SourceRecord, read_range
from pipeline.offset_ledger import Admission, OffsetLedger
from pipeline.readiness import READY_PATH, WEB_HOST, not_ready_because, readiness_body
from pipeline.transport import Consumer, broker_url
from runtime.clock import now_us
from runtime.fetch_tuning import FetchTuning
from runtime.retry import call_forever
from runtime.settings import Settings
from runtime.topics import USER_STATE_TABLE, durability
from schemas.codec import DecodeError, login_codec, offer_codec
from schemas.events import dead_letter_headers, offer_headers

log = logging.getLogger(__name__)

Ack = Callable[[], Awaitable[Any]] | None
"""Acknowledges the event to Faust's stream; None for records the gap reader fetched."""


class Send(Protocol):
    """Produce one record and return once the broker acknowledged it (``Deliveries.send``)."""

    async def __call__(self, topic: str, key: bytes, value: bytes | None,
                       headers: list[tuple[str, bytes]] | None = None) -> None: ...


class ReadRange(Protocol):
    """Read offsets ``start`` to ``end`` (exclusive) of a partition (``gap_reader.read_range``)."""

    async def __call__(self, bootstrap_servers: str, topic: str, partition: int, start: int,
                       end: int) -> list[SourceRecord]: ...


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


class WorkerMetrics:
    """The worker's Prometheus metrics (``/metrics/`` on its web port), in a registry of its own."""

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
        self.partition_lag = Gauge("worker_partition_lag",
                                   "High watermark of a logins partition this worker holds "
                                   "minus the offset its group resumes from (records)",
                                   ["partition"], registry=r)


class Deliveries:
    """Produce records and wait for the broker's ack, retrying for as long as it takes.

    Nothing gives up: a login is finished only when its record is acked.
    Every failed attempt counts in ``worker_send_failures_total`` and is
    logged as an error; the age of the oldest pending send is what says the
    worker is stuck. ``app`` is anything with a ``producer`` (Faust's, once
    the app runs).
    """

    def __init__(self, app: Any, metrics: WorkerMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._pending: dict[int, float] = {}
        self._next_id = 0

    def oldest_pending_s(self) -> float:
        """Seconds the oldest send still waiting for its ack has waited (0.0: none waits)."""
        if not self._pending:
            return 0.0
        return time.monotonic() - min(self._pending.values())

    def _failed(self, error: BaseException) -> None:
        self.metrics.send_failures.inc()

    async def _send_once(self, topic: str, key: bytes, value: bytes | None,
                         headers: list[tuple[str, bytes]] | None) -> None:
        # Straight to the app's producer: Faust's Topic.send would attach the
        # record to the current event (sent only at ack, which here waits for
        # this very send) and costs a good share of the worker's CPU per record.
        delivery = await self.app.producer.send(topic, key, value, None, None, headers)
        await delivery

    async def send(self, topic: str, key: bytes, value: bytes | None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        """Produce one record; return once the broker acknowledged it, however long that takes.

        The first attempt is made directly: the retry helper's setup
        (runtime/retry.py) costs more than a produce, and nearly every send
        succeeds at once. After a failure, ``call_forever`` retries with its
        capped backoff, logging and counting every failed attempt.
        """
        send_id = self._next_id
        self._next_id += 1
        self._pending[send_id] = time.monotonic()
        try:
            try:
                await self._send_once(topic, key, value, headers)
                return
            except Exception as exc:  # the broker or network failed: retry, loudly
                self._failed(exc)
                log.error("send to %s failed (%r); retrying until the broker acknowledges it",
                          topic, exc)
            await call_forever(partial(self._send_once, topic, key, value, headers),
                               f"send to {topic}", log, on_failure=self._failed)
        finally:
            del self._pending[send_id]


class LoginProcessor:
    """Everything the worker does with one login, apart from Faust.

    ``users`` maps user id to the state's JSON bytes: the worker's Faust
    table, or any mutable mapping (the unit tests use a dict). ``send``
    produces a record and returns once it is acknowledged (``Deliveries.send``);
    ``read_gap`` reads offsets Faust never handed over (``gap_reader.read_range``).
    Every admitted login is finished (its offer or dead letter acknowledged,
    then ``ledger.finish`` and its ack) exactly once, or, if the worker stops
    first, never, so it is consumed again. Once ``breaker`` trips, no further
    login is begun: ``on_event`` and ``handle`` wait until the worker stops.
    """

    def __init__(self, users: MutableMapping[str, Any], settings: Settings, send: Send,
                 ledger: OffsetLedger, metrics: WorkerMetrics,
                 read_gap: ReadRange = read_range) -> None:
        self.users = users
        self.settings = settings
        self.send = send
        self.ledger = ledger
        self.metrics = metrics
        self.read_gap = read_gap
        self.model_latency_ms = settings.model_latency_ms
        self.offers_topic = settings.offers_topic
        self.codec = login_codec()
        self.encoder = offer_codec()
        # Bounds the logins begun and not finished; released in finish (or on a dead letter).
        self.limiter = asyncio.Semaphore(settings.worker_concurrency)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.breaker = DeadLetterBreaker(settings.breaker_dead_letters)

    async def on_event(self, tp: TP, source: SourceRecord, ack: Ack) -> None:
        """One event from the stream: skip a repeat, read a gap before it, or handle it.

        After the breaker tripped, never returns (until cancelled): the event
        is neither finished nor acked, so it is not committed.
        """
        if self.breaker.tripped:
            await self.breaker.park()
        admission, generation = self.ledger.admit(tp, source.offset)
        if admission is Admission.GAP:
            await self.fill_gap(tp, source.offset)
            admission, generation = self.ledger.admit(tp, source.offset)
        if admission is Admission.SKIP:
            if ack is not None:
                await ack()
            return
        await self.handle(tp, source, generation, ack)

    def begin(self, value: bytes | None, position: Position) -> Planned:
        """The ordered half: decode, count the login in the user's state, compute the offer.

        Never awaits, so a user's logins update the state in offset order.

        Raises:
            PoisonMessage: for anything that must go to the dead-letter topic.
        """
        try:
            login = self.codec.decode(value)
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

    async def handle(self, tp: TP, source: SourceRecord, generation: int, ack: Ack) -> None:
        """Begin one admitted login in order; its slow half goes to the task pool.

        Waits for a free slot in the pool first. A login ``begin`` refuses, or
        fails on unexpectedly, is dead-lettered before this returns. Once the
        breaker has tripped, waits until the worker stops instead.
        """
        if self.breaker.tripped:
            await self.breaker.park()
        await self.limiter.acquire()
        try:
            planned = self.begin(source.value, Position(source.partition, source.offset))
        except Exception as exc:
            if isinstance(exc, PoisonMessage):
                log.warning("poison message (%s): %r", exc.stage, exc.error)
                error, stage = exc.error, exc.stage
            else:  # a bug: keep the stream alive, keep the message
                log.exception("unexpected error on %s[%d]", source.topic, source.partition)
                error, stage = exc, "worker"
            try:
                await self.dead_letter(source, error, stage)
                self.ledger.finish(tp, source.offset, generation)
                if ack is not None:
                    await ack()
            finally:
                self.limiter.release()
            return
        task = asyncio.create_task(self.finish(tp, source, planned, generation, ack))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def finish(self, tp: TP, source: SourceRecord, planned: Planned, generation: int,
                     ack: Ack) -> None:
        """The slow half of one login: model call, then produce the offer, then ack."""
        offer = planned.offer
        try:
            await simulate_model_latency(self.model_latency_ms)
            try:
                value = self.encoder.encode(offer)
            except Exception as exc:  # the engine produced an invalid offer
                log.exception("offer for ticket %s does not encode", offer["ticket_id"])
                await self.dead_letter(source, exc, "engine")
            else:
                # Headers let edges index and measure the offer without decoding it.
                await self.send(self.offers_topic, offer["ticket_id"].encode(),
                                value, offer_headers(offer))
                self.metrics.logins.labels("positioned" if planned.counted else "repeated").inc()
                self.breaker.processed()
            # Not in a finally: a send cut short by shutdown stays unfinished, so the
            # login is consumed again instead of being committed without its offer.
            self.ledger.finish(tp, source.offset, generation)
            if ack is not None:
                await ack()
        finally:
            self.limiter.release()

    async def dead_letter(self, source: SourceRecord, error: Exception, stage: str) -> None:
        """Produce the login's bytes to the dead-letter topic, the error in its headers.

        A replayed login (``positioning dlq replay``) that fails again keeps
        its provenance headers (schemas/events.py ``PROVENANCE_HEADERS``).
        Counts in the breaker once the dead letter is acknowledged.
        """
        headers = dead_letter_headers(type(error).__name__, str(error), stage, source.topic,
                                      source.partition, source.offset, now_us(),
                                      carried=source.headers)
        log.warning("dead letter from %s[%d]@%d: %s: %s", source.topic, source.partition,
                    source.offset, type(error).__name__, error)
        self.metrics.logins.labels("dead_lettered").inc()
        await self.send(self.settings.dlq_topic, source.key, source.value, headers)  # type: ignore[arg-type]
        self.breaker.dead_lettered(type(error).__name__, str(error), stage)

    async def fill_gap(self, tp: TP, end: int) -> None:
        """Read and handle the offsets Faust skipped before ``end`` (pipeline/gap_reader.py).

        Raises:
            GapUnreadable: the missing records could not be read (from ``read_gap``).
        """
        self.metrics.offset_gaps.inc()
        start = self.ledger.expected(tp)
        for record in await self.read_gap(self.settings.bootstrap_servers, tp.topic,
                                          tp.partition, start, end):
            admission, generation = self.ledger.admit(tp, record.offset)
            if admission is Admission.PROCESS:
                await self.handle(tp, record, generation, None)
        if self.ledger.expected(tp) != end:  # offsets with no record (none in `logins`): step over
            self.ledger.step_to(tp, end)

    async def tombstone(self, ticket_id: bytes) -> None:
        """Delete an expired offer: a tombstone on ``offers``, acknowledged before this returns."""
        await self.send(self.settings.offers_topic, ticket_id, None)


class ConsumerWedged(RuntimeError):
    """Finished work has not been committed for too long: the Kafka consumer is stuck."""


class Health:
    """What the worker's web pages and watchdog report, read from its parts."""

    def __init__(self, app: faust.App, settings: Settings, ledger: OffsetLedger,
                 deliveries: Deliveries, expirer: Expirer, metrics: WorkerMetrics,
                 breaker: DeadLetterBreaker | None = None) -> None:
        self.app = app
        self.breaker = breaker
        self.settings = settings
        self.ledger = ledger
        self.deliveries = deliveries
        self.expirer = expirer
        self.metrics = metrics
        self.started = False          # set by a task: Faust starts tasks after the first recovery
        self.agent: AgentT | None = None

    def status(self) -> tuple[int, dict[str, Any]]:
        """``/status/``: 503 while a send or a commit has waited ``worker_stuck_after_s``,
        the group rebalances or the breaker is open, else 200; the body says why."""
        breaker = self.breaker.reason if self.breaker is not None else None
        oldest = self.deliveries.oldest_pending_s()
        stalled = self.ledger.commit_stalled_s()
        stuck = (oldest > self.settings.worker_stuck_after_s
                 or stalled > self.settings.worker_stuck_after_s)
        ready = not stuck and self.app.rebalancing is False and breaker is None
        body = {"ready": ready, "breaker": breaker,
                "stuck": stuck, "oldest_unacked_send_s": round(oldest, 3),
                "commit_stalled_s": round(stalled, 3),
                "in_flight": self.ledger.in_flight(), "offset_gaps": self.ledger.gaps,
                "offers_awaiting_expiry": len(self.expirer.index),
                "expiry_loading_partitions": sorted(self.expirer.index.loading)}
        return (200 if ready else 503), body

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """``/ready/``: the contract is in pipeline/readiness.py."""
        agent = self.agent
        reason = not_ready_because(
            tripped=self.breaker.reason if self.breaker is not None else None,
            started=self.started,
            agent_running=agent is not None and agent.started and not agent.crashed,
            rebalancing=bool(self.app.rebalancing),
            recovering=bool(getattr(self.app, "in_recovery", False)))
        partitions = [] if reason else sorted(
            tp.partition for tp in self.app.consumer.assignment()
            if tp.topic == self.settings.logins_topic)
        return readiness_body(reason, partitions)

    def exposition(self) -> bytes:
        """``/metrics/``: the registry in Prometheus' text format, gauges read now."""
        self.metrics.oldest_send_s.set(self.deliveries.oldest_pending_s())
        self.metrics.in_flight.set(self.ledger.in_flight())
        self.metrics.expiry_queue.set(len(self.expirer.index))
        self.metrics.partition_lag.clear()
        for partition, lag in self.partition_lag().items():
            self.metrics.partition_lag.labels(str(partition)).set(lag)
        return generate_latest(self.metrics.registry)

    def partition_lag(self) -> dict[int, int]:
        """Per ``logins`` partition this worker holds: its high watermark minus the offset
        the group resumes from (the ledger's last commit). A partition whose high watermark
        the consumer does not know yet (nothing fetched since it was assigned) is left out."""
        consumer = self.app.consumer
        try:
            assigned = consumer.assignment()
        except ConsumerNotStarted:
            return {}
        resume = self.ledger.resume_offsets()
        out = {}
        for tp in assigned:
            if tp not in resume:
                continue
            try:
                high = consumer.highwater(tp)
            except (ConsumerNotStarted, AssertionError):  # stopped, or revoked meanwhile
                continue
            if high is not None:
                out[tp.partition] = max(0, high - resume[tp])
        return out

    def wedged(self) -> ConsumerWedged | None:
        """The error to stop the worker with if finished logins waited too long for a commit."""
        stalled = self.ledger.commit_stalled_s()
        if stalled <= self.settings.worker_commit_stall_s:
            return None
        return ConsumerWedged(f"finished logins have waited {stalled:.0f} s for a commit")


def create_app(settings: Settings,
               on_wedged: Callable[[BaseException], None] | None = None) -> faust.App:
    """Build the Faust app for these settings (``pipeline.app`` builds it from the env).

    ``on_wedged`` is called, from the event loop, when finished logins have
    waited ``worker_commit_stall_s`` for a commit: aiokafka's group
    coordinator can hang for good after a broker restart, and the worker
    then reads nothing more. ``positioning worker`` passes a callback that
    replaces the process (nothing unfinished was committed, so a fresh worker
    starts exactly there); without one the app crashes.

    Faust's internal topics get the settings' replication factor and the
    state changelog their ``min.insync.replicas`` too (``runtime.topics.durability``,
    without asking the cluster: ``positioning worker`` passes settings that
    ``ensure_topics`` resolved, and creates the changelog itself).
    """
    wanted = durability(settings, brokers=None)
    app = faust.App(
        settings.worker_id,
        broker=broker_url(settings.bootstrap_servers, FetchTuning.from_settings(settings)),
        # Faust's RocksDB store, keeping its tuning when it reopens (pipeline/state_store.py).
        store="positioning://",
        datadir=str(settings.worker_data_dir or settings.home / "worker"),
        # Other workers keep standby copies of the user state, so the partitions of
        # a worker that dies resume from them, not from the whole changelog.
        table_standby_replicas=settings.worker_standby_replicas,
        topic_partitions=settings.partitions,
        topic_replication_factor=wanted.replication_factor,
        topic_allow_declare=True,
        producer_acks=-1,
        # Port 0 turns the web server off (pipeline/readiness.py).
        web_enabled=settings.worker_web_port > 0,
        web_port=max(settings.worker_web_port, 1),
        web_bind=WEB_HOST,
        web_host=WEB_HOST,
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
    users = app.Table(USER_STATE_TABLE, default=None, partitions=settings.partitions,
                      key_type=str, value_type=bytes,
                      extra_topic_configs={
                          "min.insync.replicas": str(wanted.min_insync_replicas)})
    # The transport commits only what the ledger allows (pipeline/transport.py).
    ledger = OffsetLedger(settings.logins_topic)
    app.offset_ledger = ledger  # type: ignore[attr-defined]
    metrics = WorkerMetrics()
    deliveries = Deliveries(app, metrics)
    processor = LoginProcessor(users, settings, deliveries.send, ledger, metrics)
    expirer = Expirer(settings.bootstrap_servers, settings.offers_topic,
                      f"{settings.worker_id}-expiry", processor.tombstone, settings.expiry_sweep_s,
                      on_tombstone=metrics.tombstones.inc)
    health = Health(app, settings, ledger, deliveries, expirer, metrics, processor.breaker)

    @app.agent(logins)
    async def position(stream: StreamT) -> None:
        manual = cast(faust.Stream, stream).noack()
        async for event in manual.events():
            m = event.message
            await processor.on_event(m.tp, SourceRecord(m.topic, m.partition, m.offset,
                                                        m.key, m.value, m.headers or ()),
                                     partial(manual.ack, event))

    health.agent = position

    @app.on_partitions_assigned.connect
    async def keep_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Forget partitions other workers now hold (Faust seeks none when given none)."""
        assigned: set[TP] = args[0]
        ledger.keep_only(tp for tp in assigned if tp.topic == settings.logins_topic)

    @app.task
    async def started() -> None:
        """Faust starts tasks once the first table recovery has finished."""
        health.started = True

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
            await cast(Consumer, app.consumer).commit_finished()

    @app.timer(interval=5.0)
    async def watch_commits() -> None:
        """Stop a worker whose consumer no longer commits what it finished."""
        wedged = health.wedged()
        if wedged is None:
            return
        log.critical("%s: the Kafka consumer is stuck; replacing the worker", wedged)
        if on_wedged is not None:
            on_wedged(wedged)
        else:
            await app.crash(wedged)

    @app.page("/status/")
    async def status_page(web: Any, request: Any) -> Any:
        code, body = health.status()
        return web.json(body, status=code)

    @app.page(READY_PATH)
    async def ready_page(web: Any, request: Any) -> Any:
        code, body = health.readiness()
        return web.json(body, status=code)

    @app.page("/metrics/")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(health.exposition(), content_type="text/plain; version=0.0.4")

    return app
