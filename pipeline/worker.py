"""The offer worker: a faust-streaming app that turns logins into offers.

One agent reads ``logins`` and hands ``LoginProcessor`` the events the
stream has ready, as a batch (pipeline/batching.py). Each login is decoded,
counted in its user's state and turned into a signed offer on ``offers``;
a poison message becomes a dead letter on ``logins.dlq``. Delivery is
at-least-once with idempotent effects: a login is finished only once its
offer or dead letter is acknowledged, and only what is finished is
committed (pipeline/offset_ledger.py). How a batch travels, the guarantees
and their tests: docs/architecture.md ("The worker's guarantees") and
docs/decisions/0001, 0003 and 0013.

The web server (``worker_web_port``; 0 turns it off) serves ``/status/``,
``/metrics/`` and ``/ready/`` (pipeline/readiness.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, cast

import faust
import orjson
from faust.exceptions import ConsumerNotStarted
from faust.types import TP, AgentT, ChannelT, StreamT
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
from pipeline.batching import NaturalBatches
from pipeline.breaker import DeadLetterBreaker
from pipeline.expiry import Expirer
from pipeline.gap_reader import SourceRecord, read_offsets, read_range
from pipeline.offer_repair import Judge, OfferRepairer
from pipeline.offer_signing import BatchSigning
from pipeline.offset_ledger import Admission, OffsetLedger
from pipeline.readiness import READY_PATH, WEB_HOST, not_ready_because, readiness_body
from pipeline.records import OutRecord
from pipeline.transport import Consumer, broker_url
from runtime.clock import now_us
from runtime.compat import faust as faust_compat
from runtime.fetch_tuning import FetchTuning
from runtime.kafka_security import KafkaAccess, Role, kafka_access
from runtime.offer_keys import signing_keyring, verify_keyring
from runtime.retry import call_forever
from runtime.settings import Settings
from runtime.topics import USER_STATE_TABLE, durability
from schemas.codec import DecodeError, login_codec, offer_codec
from schemas.events import EXPIRES_AT_HEADER, dead_letter_headers, offer_headers
from schemas.offer_signatures import OfferVerifier

log = logging.getLogger(__name__)

Ack = Callable[[], Awaitable[Any]] | None
"""Acknowledges the event to Faust's stream; None for records the gap reader fetched."""

BATCH_SHARE_OF_CONCURRENCY = 2
"""A batch holds at most ``worker_concurrency`` / this many logins, so the next batch is
begun while the one before waits for its acks."""


class Sending(Protocol):
    """Records handed to the producer; ``acknowledged`` returns once the broker acked each."""

    async def acknowledged(self) -> None: ...


class Outbox(Protocol):
    """Where the worker's records go: ``Deliveries`` (the unit tests use a fake)."""

    async def send(self, topic: str, key: bytes, value: bytes | None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        """Produce one record; return once the broker acknowledged it."""

    async def enqueue(self, records: Sequence[OutRecord]) -> Sending:
        """Hand ``records`` to the producer in order, without waiting for the broker."""


class ReadRange(Protocol):
    """Read offsets ``start`` to ``end`` (exclusive) of a partition (``gap_reader.read_range``)."""

    async def __call__(self, bootstrap_servers: str, topic: str, partition: int, start: int,
                       end: int) -> list[SourceRecord]: ...


class StateMap(Protocol):
    """Users' states as JSON bytes, by user id: what ``LoginProcessor.begin`` reads and writes."""

    def get(self, user_id: str) -> Any: ...

    def __setitem__(self, user_id: str, state: bytes) -> None: ...


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


@dataclass(slots=True)
class Incoming:
    """One event the stream handed over: its partition, record, ack and Faust event.

    ``event`` (None in the unit tests) decides which changelog partition the
    table writes of its login go to (Faust takes the current event's).
    """

    tp: TP
    source: SourceRecord
    ack: Ack = None
    event: Any = None


@dataclass(slots=True)
class Begun:
    """A login admitted and begun in a batch: what finishing it takes."""

    tp: TP
    offset: int
    generation: int
    ack: Ack
    outcome: str          # the worker_logins_total label: positioned, repeated, dead_lettered


@dataclass
class Batch:
    """Logins begun together and the records they produce, in offset order."""

    begun: list[Begun] = field(default_factory=list)
    records: list[OutRecord] = field(default_factory=list)


class StagedStates:
    """The users' states as a batch sees them: its own writes first, then the table.

    ``write_through`` writes each user's last staged state to the table once,
    each with its login's Faust event made current (``make_current``): Faust's
    table writes the changelog record, and its RocksDB store the value, to the
    partition of the current event (and reads from it, so the processor makes
    each login's event current before it reads the user's state).
    """

    def __init__(self, users: MutableMapping[str, Any],
                 make_current: Callable[[Any], None]) -> None:
        self.users = users
        self.make_current = make_current
        self.event: Any = None             # the Faust event of the login being begun
        self._staged: dict[str, tuple[bytes, Any]] = {}

    def get(self, user_id: str) -> Any:
        staged = self._staged.get(user_id)
        return staged[0] if staged is not None else self.users.get(user_id)

    def __setitem__(self, user_id: str, state: bytes) -> None:
        self._staged[user_id] = (state, self.event)

    def write_through(self) -> None:
        """Write every staged state to the table, one write per user."""
        make_current = self.make_current
        for user_id, (state, event) in self._staged.items():
            if event is not None:
                make_current(event)
            self.users[user_id] = state
        self._staged.clear()


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
        self.batch_logins = Histogram("worker_batch_logins",
                                      "Logins begun together in one batch",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.offset_gaps = Counter("worker_offset_gaps_total",
                                   "Offsets Faust did not hand over (sought back)", registry=r)
        self.expiry_queue = Gauge("worker_offers_awaiting_expiry",
                                  "Live offers in this worker's expiry partitions", registry=r)
        self.tombstones = Counter("worker_tombstones_total",
                                  "Tombstones produced for expired offers", registry=r)
        self.repaired = Counter("worker_offers_repaired_total",
                                "Genuine offers records produced again because a record an "
                                "edge would not keep came after them", registry=r)
        self.repairs_lost = Counter("worker_offer_repairs_lost_total",
                                    "Tickets whose newest genuine record was compacted away "
                                    "before it could be produced again", registry=r)
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

    def _track(self) -> int:
        send_id = self._next_id
        self._next_id += 1
        self._pending[send_id] = time.monotonic()
        return send_id

    def untrack(self, send_id: int) -> None:
        """The send ``send_id`` (from ``_track``) no longer waits for an ack."""
        del self._pending[send_id]

    def failed(self, topic: str, error: BaseException) -> None:
        """Count and log one failed attempt to produce to ``topic`` (it is retried)."""
        self.metrics.send_failures.inc()
        log.error("send to %s failed (%r); retrying until the broker acknowledges it",
                  topic, error)

    def _failed_again(self, error: BaseException) -> None:
        self.metrics.send_failures.inc()

    async def _send_once(self, topic: str, key: bytes, value: bytes | None,
                         headers: list[tuple[str, bytes]] | None) -> None:
        # Straight to the app's producer: Faust's Topic.send would attach the
        # record to the current event (sent only at ack, which here waits for
        # this very send) and costs a good share of the worker's CPU per record.
        delivery = await self.app.producer.send(topic, key, value, None, None, headers)
        await delivery

    async def retry(self, record: OutRecord) -> None:
        """Produce ``record`` again until the broker acknowledges it, however long that takes
        (``call_forever``: capped backoff, every failed attempt logged and counted)."""
        await call_forever(partial(self._send_once, *record), f"send to {record.topic}", log,
                           on_failure=self._failed_again)

    async def send(self, topic: str, key: bytes, value: bytes | None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        """Produce one record; return once the broker acknowledged it, however long that takes.

        The first attempt is made directly: the retry helper's setup
        (runtime/retry.py) costs more than a produce, and nearly every send
        succeeds at once.
        """
        send_id = self._track()
        try:
            try:
                await self._send_once(topic, key, value, headers)
                return
            except Exception as exc:  # the broker or network failed: retry, loudly
                self.failed(topic, exc)
            await self.retry(OutRecord(topic, key, value, headers))
        finally:
            self.untrack(send_id)

    async def enqueue(self, records: Sequence[OutRecord]) -> PendingSends:
        """Hand ``records`` to the producer in order; the result waits for their acks.

        ``producer.send`` returns once the record is in the producer's buffer
        (aiokafka), with a future for its delivery. A record the producer
        refuses is counted and logged here and retried by ``acknowledged``.
        """
        send_id = self._track()
        deliveries: list[asyncio.Future[Any] | None] = []
        try:
            send = self.app.producer.send
            for topic, key, value, headers in records:
                try:
                    deliveries.append(await send(topic, key, value, None, None, headers))
                except Exception as exc:
                    self.failed(topic, exc)
                    deliveries.append(None)
        except BaseException:
            self.untrack(send_id)
            raise
        return PendingSends(self, send_id, records, deliveries)


class PendingSends:
    """Records handed to the producer by ``Deliveries.enqueue``, waiting for their acks."""

    def __init__(self, deliveries: Deliveries, send_id: int, records: Sequence[OutRecord],
                 futures: list[asyncio.Future[Any] | None]) -> None:
        self.deliveries = deliveries
        self.send_id = send_id
        self.records = records
        self.futures = futures

    async def acknowledged(self) -> None:
        """Return once the broker acknowledged every record; a failed one is retried for ever."""
        owner = self.deliveries
        try:
            for record, future in zip(self.records, self.futures, strict=True):
                if future is not None:
                    try:
                        await future
                        continue
                    except Exception as exc:  # the broker or network failed: retry, loudly
                        owner.failed(record.topic, exc)
                await owner.retry(record)
        finally:
            owner.untrack(self.send_id)


def _release(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class LoginProcessor:
    """Everything the worker does with logins, apart from Faust: one batch at a time.

    ``users`` maps user id to the state's JSON bytes: the worker's Faust
    table, or any mutable mapping (the unit tests use a dict). ``outbox``
    produces records (``Deliveries``); ``read_gap`` reads offsets Faust never
    handed over (``gap_reader.read_range``); ``make_current`` makes a Faust
    event current, so a table write goes to its partition's changelog (the
    agent sets it; the default does nothing).

    ``on_batch`` begins each login of a batch in offset order, without
    awaiting: decode, count in the user's state (staged, then written to
    the table once per user), compute and encode the offer, or make a dead
    letter of it. The begun batch then goes to a task of its own: the model
    call, its records handed to the producer (after the batch before's, so
    records keep their order), their acks awaited once, then each login
    finished (``ledger.finish`` and its ack) in order. Every admitted login
    is finished exactly once, or, if the worker stops first, never, so it is
    consumed again. At most ``worker_concurrency`` logins are begun and not
    finished (``limiter``). Once ``breaker`` trips, no further login is
    begun: ``on_batch`` waits until the worker stops.
    """

    def __init__(self, users: MutableMapping[str, Any], settings: Settings, outbox: Outbox,
                 ledger: OffsetLedger, metrics: WorkerMetrics, *,
                 read_gap: ReadRange, signing: BatchSigning | None,
                 make_current: Callable[[Any], None] = lambda event: None) -> None:
        self.users = users
        self.settings = settings
        self.outbox = outbox
        self.ledger = ledger
        self.metrics = metrics
        self.read_gap = read_gap
        self.signing = signing
        self.model_latency_ms = settings.model_latency_ms
        self.offers_topic = settings.offers_topic
        self.codec = login_codec()
        self.encoder = offer_codec()
        self.states = StagedStates(users, make_current)
        # One slot per login begun and not finished; given back when its batch finishes.
        self.limiter = asyncio.Semaphore(settings.worker_concurrency)
        self.batch_max = max(1, settings.worker_concurrency // BATCH_SHARE_OF_CONCURRENCY)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.breaker = DeadLetterBreaker(settings.breaker_dead_letters)
        self._batch = Batch()
        self._last_enqueued: asyncio.Future[None] | None = None

    @property
    def make_current(self) -> Callable[[Any], None]:
        return self.states.make_current

    @make_current.setter
    def make_current(self, make_current: Callable[[Any], None]) -> None:
        self.states.make_current = make_current

    async def on_event(self, tp: TP, source: SourceRecord, ack: Ack) -> None:
        """One event on its own: a batch of one (``on_batch``)."""
        await self.on_batch([Incoming(tp, source, ack)])

    async def on_batch(self, events: Sequence[Incoming]) -> None:
        """Events in the order the stream handed them over: skip repeats, read gaps, begin.

        Returns once every login is begun; finishing them is up to the
        batch's task (``in_flight``). After the breaker tripped, never returns
        (until cancelled): the logins after the trip are neither begun nor
        acked, so they are not committed.

        Raises:
            GapUnreadable: records Faust skipped could not be read (``read_gap``).
        """
        ledger = self.ledger
        for incoming in events:
            tp, source = incoming.tp, incoming.source
            if self.breaker.tripped:
                await self._park()
            admission, generation = ledger.admit(tp, source.offset)
            if admission is Admission.GAP:
                await self._fill_gap(incoming)
                admission, generation = ledger.admit(tp, source.offset)
            if admission is Admission.SKIP:
                if incoming.ack is not None:
                    await incoming.ack()
                continue
            await self._begin_login(tp, source, generation, incoming.ack, incoming.event)
        self._dispatch()

    async def _park(self) -> None:
        """The breaker tripped: finish what was begun before it, then take nothing more."""
        self._dispatch()
        await self.breaker.park()

    async def _begin_login(self, tp: TP, source: SourceRecord, generation: int, ack: Ack,
                           event: Any) -> None:
        """Take a slot (sending the batch so far off first if none is free), then begin."""
        if self.limiter.locked() or len(self._batch.begun) >= self.batch_max:
            self._dispatch()
        await self.limiter.acquire()
        batch = self._batch
        if event is not None:
            # Faust's table reads, and writes, the partition of the current event.
            self.states.make_current(event)
        self.states.event = event
        try:
            planned = self.begin(source.value, Position(source.partition, source.offset),
                                 self.states)
            try:
                value = self.encoder.encode(planned.offer)
            except Exception as exc:  # the engine produced an invalid offer
                log.exception("offer for ticket %s does not encode", planned.offer["ticket_id"])
                raise PoisonMessage("engine", exc) from exc
        except Exception as exc:
            if isinstance(exc, PoisonMessage):
                log.warning("poison message (%s): %r", exc.stage, exc.error)
                error, stage = exc.error, exc.stage
            else:  # a bug: keep the stream alive, keep the message
                log.exception("unexpected error on %s[%d]", source.topic, source.partition)
                error, stage = exc, "worker"
            batch.records.append(self.dead_letter(source, error, stage))
            batch.begun.append(Begun(tp, source.offset, generation, ack, "dead_lettered"))
            self.breaker.dead_lettered(type(error).__name__, str(error), stage)
            return
        offer = planned.offer
        # Headers let edges index and measure the offer without decoding it.
        batch.records.append(OutRecord(self.offers_topic, offer["ticket_id"].encode(), value,
                                       offer_headers(offer)))
        batch.begun.append(Begun(tp, source.offset, generation, ack,
                                 "positioned" if planned.counted else "repeated"))
        self.breaker.processed()

    def begin(self, value: bytes | None, position: Position,
              states: StateMap | None = None) -> Planned:
        """Decode one login, count it in the user's state, compute the offer.

        ``states`` is where the user's state is read and written (default:
        ``users``; a batch passes its ``StagedStates``). Never awaits, so a
        user's logins update the state in offset order.

        Raises:
            PoisonMessage: for anything that must go to the dead-letter topic.
        """
        users: StateMap = self.users if states is None else states
        try:
            login = self.codec.decode(value)
        except DecodeError as exc:
            raise PoisonMessage("decode", exc) from exc
        try:
            validate_login(login)
        except LoginRejected as exc:
            raise PoisonMessage("validate", exc) from exc
        user_id = login["user_id"]
        state = load_state(users.get(user_id))
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
                users[user_id] = orjson.dumps(retried)
            return Planned(offer, counted=False)
        users[user_id] = orjson.dumps(next_state(
            state, login["ticket_id"], view, position, login["login_accepted_at"],
            offer["country"], shown_categories(offer), login["expires_at"], created_at))
        return Planned(offer)

    def _dispatch(self) -> None:
        """Write the batch's states to the table and send the batch to its own task."""
        batch = self._batch
        if not batch.begun:
            return
        self._batch = Batch()
        self.states.write_through()
        self.metrics.batch_logins.observe(len(batch.begun))
        previous = self._last_enqueued
        self._last_enqueued = enqueued = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._finish(batch, previous, enqueued))
        self.in_flight.add(task)
        # A callback, not a finally: a task cancelled before it ever ran has a slot too.
        task.add_done_callback(partial(self._batch_done, len(batch.begun), enqueued))

    def _batch_done(self, slots: int, enqueued: asyncio.Future[None],
                    task: asyncio.Task[None]) -> None:
        """A batch's task ended (finished, or cut short): give its slots back."""
        self.in_flight.discard(task)
        _release(enqueued)
        for _ in range(slots):
            self.limiter.release()

    async def _finish(self, batch: Batch, previous: asyncio.Future[None] | None,
                      enqueued: asyncio.Future[None]) -> None:
        """The slow half of a batch: model calls, produce, wait for the acks, finish in order."""
        try:
            await simulate_model_latency(self.model_latency_ms)  # the batch's calls, together
            if previous is not None:
                await asyncio.shield(previous)  # the batch before has handed its records over
            records = batch.records if self.signing is None else self.signing.sign(batch.records)
            sending = await self.outbox.enqueue(records)
            _release(enqueued)
            await sending.acknowledged()
            # Not in a finally: a batch cut short by shutdown stays unfinished, so its
            # logins are consumed again instead of being committed without their offers.
            outcomes: dict[str, int] = {}
            finish = self.ledger.finish
            for begun in batch.begun:
                finish(begun.tp, begun.offset, begun.generation)
                if begun.ack is not None:
                    await begun.ack()
                outcomes[begun.outcome] = outcomes.get(begun.outcome, 0) + 1
            for outcome, count in outcomes.items():
                self.metrics.logins.labels(outcome).inc(count)
        finally:
            _release(enqueued)

    def dead_letter(self, source: SourceRecord, error: Exception, stage: str) -> OutRecord:
        """The dead letter for a login: its bytes, for the dead-letter topic, the error in headers.

        A replayed login (``positioning dlq replay``) that fails again keeps
        its provenance headers (schemas/events.py ``PROVENANCE_HEADERS``).
        """
        headers = dead_letter_headers(type(error).__name__, str(error), stage, source.topic,
                                      source.partition, source.offset, now_us(),
                                      carried=source.headers)
        log.warning("dead letter from %s[%d]@%d: %s: %s", source.topic, source.partition,
                    source.offset, type(error).__name__, error)
        return OutRecord(self.settings.dlq_topic, source.key, source.value, headers)  # type: ignore[arg-type]

    async def _fill_gap(self, incoming: Incoming) -> None:
        """Read and begin the offsets Faust skipped before ``incoming`` (pipeline/gap_reader.py).

        Raises:
            GapUnreadable: the missing records could not be read (from ``read_gap``).
        """
        tp, end = incoming.tp, incoming.source.offset
        self.metrics.offset_gaps.inc()
        self.states.write_through()   # no staged state waits across the read
        start = self.ledger.expected(tp)
        for record in await self.read_gap(self.settings.bootstrap_servers, tp.topic,
                                          tp.partition, start, end):
            admission, generation = self.ledger.admit(tp, record.offset)
            if admission is Admission.PROCESS:
                if self.breaker.tripped:
                    await self._park()
                # Gap records have no Faust event; the one after them has their partition.
                await self._begin_login(tp, record, generation, None, incoming.event)
        if self.ledger.expected(tp) != end:  # offsets with no record (none in `logins`): step over
            self.ledger.step_to(tp, end)

    async def tombstones(self, due: Sequence[tuple[bytes, int]]) -> None:
        """Delete expired offers, ``(ticket id, expiry µs)`` each: tombstones on ``offers``,
        signed together, each carrying the expiry it ends as its version (edge/store.py);
        acknowledged before this returns."""
        offers = self.offers_topic
        records = [OutRecord(offers, ticket_id, None, [(EXPIRES_AT_HEADER, str(expires_at).encode())])
                   for ticket_id, expires_at in due]
        if self.signing is not None:
            records = self.signing.sign(records)
        sending = await self.outbox.enqueue(records)
        await sending.acknowledged()

    async def resend(self, records: Sequence[SourceRecord]) -> None:
        """Produce records of ``offers`` again exactly as they were read, signature headers
        and all (pipeline/offer_repair.py); acknowledged before this returns."""
        sending = await self.outbox.enqueue([
            OutRecord(self.offers_topic, r.key, r.value, list(r.headers))
            for r in records if r.key is not None])
        await sending.acknowledged()


def offer_repairer(settings: Settings, access: KafkaAccess,
                   resend: Callable[[list[SourceRecord]], Awaitable[None]],
                   metrics: WorkerMetrics) -> OfferRepairer | None:
    """The expiry consumer's repairs (pipeline/offer_repair.py), checking records against the
    edges' verify file; None when offers are not signed.

    Raises OfferKeyError: the verify file is missing, malformed or trusts no key.
    """
    keyring = verify_keyring(settings)
    if keyring is None:
        return None
    verifier = OfferVerifier(settings.offers_topic, keyring.get)

    def refresh_keys() -> bool:
        changed = keyring.refresh(now_us(), force=True)
        if changed:
            verifier.forget()
        return changed

    async def read(partition: int, offsets: Sequence[int]) -> dict[int, SourceRecord]:
        return await read_offsets(settings.bootstrap_servers, settings.offers_topic, partition,
                                  offsets, access=access)

    return OfferRepairer(Judge(verifier, offer_codec(), refresh_keys), read, resend,
                         on_repaired=metrics.repaired.inc, on_lost=metrics.repairs_lost.inc)


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


def faust_credentials(access: KafkaAccess) -> faust.SASLCredentials | None:
    """Faust's ``broker_credentials`` for ``access``: SASL over TLS, or None (plaintext)."""
    if not access.secured:
        return None
    assert access.password is not None
    return faust.SASLCredentials(username=access.username,
                                 password=access.password.get_secret_value(),
                                 ssl_context=access.ssl_context(), mechanism=access.mechanism)


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
    access = kafka_access(settings, Role.WORKER)
    app = faust.App(
        settings.worker_id,
        broker=broker_url(settings.bootstrap_servers, FetchTuning.from_settings(settings)),
        # Faust's consumers, producer and topic creation connect as the worker role.
        broker_credentials=faust_credentials(access),
        # Faust's RocksDB store, keeping its tuning when it reopens (pipeline/state_store.py).
        store="positioning://",
        datadir=str(settings.worker_state_dir),
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
        # A crashed worker's partitions move on after seconds, not a minute; a
        # heartbeat every tenth of that (at most 1 s) keeps a live one in the group.
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=min(1.0, settings.worker_session_timeout_s / 10),
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
    async def read_gap(bootstrap_servers: str, topic: str, partition: int, start: int,
                       end: int) -> list[SourceRecord]:
        return await read_range(bootstrap_servers, topic, partition, start, end, access=access)

    keyring = signing_keyring(settings)
    signing = None if keyring is None else BatchSigning(settings.offers_topic, keyring,
                                                           settings.partitions)
    processor = LoginProcessor(users, settings, deliveries, ledger, metrics, read_gap=read_gap,
                               signing=signing)
    expirer = Expirer(settings.bootstrap_servers, settings.offers_topic,
                      f"{settings.worker_id}-expiry", processor.tombstones, settings.expiry_sweep_s,
                      on_tombstone=metrics.tombstones.inc, access=access,
                      repairer=offer_repairer(settings, access, processor.resend, metrics))
    health = Health(app, settings, ledger, deliveries, expirer, metrics, processor.breaker)

    @app.agent(logins)
    async def position(stream: StreamT) -> None:
        manual = cast(faust.Stream, stream).noack()
        processor.make_current = partial(faust_compat.make_current, manual)
        queue = cast(ChannelT, manual.channel).queue
        batches: NaturalBatches[Incoming] = NaturalBatches(
            processor.on_batch, processor.batch_max, more_ready=lambda: not queue.empty(),
            on_error=crash_app)
        try:
            async for event in manual.events():
                m = event.message
                await batches.add(Incoming(m.tp, SourceRecord(m.topic, m.partition, m.offset,
                                                              m.key, m.value, m.headers or ()),
                                           partial(manual.ack, event), event))
        finally:
            batches.close()

    crashes: set[asyncio.Task[None]] = set()

    def crash_app(error: BaseException) -> None:
        """Stop the app with ``error`` (from a callback: Faust's ``crash`` is a coroutine)."""
        task = asyncio.ensure_future(app.crash(error))
        crashes.add(task)
        task.add_done_callback(crashes.discard)

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
