"""The offer worker: a faust-streaming app that turns logins into offers.

One agent reads ``logins`` (keyed by user id). For each login it decodes the
event, counts the login in the user's state (a RocksDB-backed table, updated
synchronously so a user's logins apply in order), then hands the slow part
(the simulated model call, computing and producing the offer) to a bounded
pool of tasks, so model latency does not serialise throughput.

Delivery is at-least-once with idempotent effects, which we chose over
Faust's ``exactly_once`` (Kafka transactions) because transactions would add
a commit round trip per batch to the positioning latency:

- acks are manual (``stream.noack()``); an event is acked only after its
  offer (or its dead letter) is acknowledged by the broker, and Faust
  commits only offsets below the oldest unacked event, so a crash replays
  what was in flight and loses nothing;
- the user state remembers the offset of the last counted login (a user's
  logins share one partition), so a replayed login is never counted twice,
  and the views of recent logins, so a replay yields the same offer;
- the offer is keyed by ticket on a compacted topic, so a replay overwrites
  it with identical content.

Poison messages (undecodable bytes, an unknown schema, a login the engine
refuses or fails on) go to ``logins.dlq`` with the error in headers, and the
stream goes on. Expired tickets get tombstones on ``offers``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Any

import faust
import orjson
from faust.types import EventT, StreamT

from pipeline.engine.offers import compute_offer, shown_categories, simulate_model_latency
from pipeline.engine.state import Position, next_state, view_for_login
from pipeline.engine.validation import LoginRejected, validate_login
from positioning.fetch_tuning import FetchTuning
from positioning.settings import Settings
from schemas.codec import DecodeError, login_codec, offer_codec

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)


def now_us() -> int:
    return time.time_ns() // 1000


def broker_url(bootstrap: str, fetch: FetchTuning) -> str:
    """Faust's broker URL: the "positioning" transport is Faust's aiokafka driver
    with the fetch tuning in the query (pipeline/transport.py)."""
    return ";".join(f"positioning://{server.strip()}?{fetch.query()}"
                    for server in bootstrap.split(","))


def load_state(stored: bytes | None) -> dict[str, Any] | None:
    """A user's state from its table value (JSON bytes, written with orjson.dumps)."""
    return orjson.loads(stored) if stored else None


class PoisonMessage(Exception):
    """A login that cannot be processed; it goes to the dead-letter topic."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


class ExpiryQueue:
    """Tickets waiting for their tombstone, soonest first (rebuilt from the table on start)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._queued: set[str] = set()

    def push(self, expires_at: int, ticket_id: str) -> None:
        if ticket_id not in self._queued:
            self._queued.add(ticket_id)
            heapq.heappush(self._heap, (expires_at, ticket_id))

    def pop_due(self, now: int) -> list[str]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            _, ticket_id = heapq.heappop(self._heap)
            self._queued.discard(ticket_id)
            due.append(ticket_id)
        return due

    def __len__(self) -> int:
        return len(self._heap)


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app for these settings (``pipeline.app`` builds it from the env)."""
    from schemas import faust_codecs

    faust_codecs.register()
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
    codec = login_codec()
    encoder = offer_codec()
    expiries = ExpiryQueue()
    limiter = asyncio.Semaphore(settings.worker_concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    expiry_ready = asyncio.Event()

    async def send_until_acked(topic: str, key: bytes, value: bytes | None,
                               headers: list[tuple[str, bytes]] | None = None) -> None:
        """Produce one record and wait for the broker's ack, retrying broker errors.

        Straight to the app's producer: Faust's Topic.send would attach the
        record to the current event (sent only at ack, which here waits for
        this very send) and costs a good share of the worker's CPU per record.
        """
        for attempt in range(10_000):
            try:
                delivery = await app.producer.send(topic, key, value, None, None, headers)
                await delivery
                return
            except Exception as exc:  # the broker or network failed: retry, loudly
                delay = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.error("send to %s failed (%r); retrying in %.1fs", topic, exc, delay)
                await asyncio.sleep(delay)

    async def dead_letter(event: EventT, error: Exception, stage: str) -> None:
        message = event.message
        headers = [
            ("error.type", type(error).__name__.encode()),
            ("error.message", str(error).encode()[:4096]),
            ("error.stage", stage.encode()),
            ("source.topic", message.topic.encode()),
            ("source.partition", str(message.partition).encode()),
            ("source.offset", str(message.offset).encode()),
            ("dead_lettered_at", str(now_us()).encode()),
        ]
        log.warning("dead letter from %s[%d]@%d: %s: %s", message.topic, message.partition,
                    message.offset, type(error).__name__, error)
        await send_until_acked(settings.dlq_topic, message.key, message.value, headers)

    async def finish(stream: StreamT, event: EventT, offer: dict[str, Any]) -> None:
        """The slow half of one login: model call, then produce the offer, then ack."""
        try:
            await simulate_model_latency(settings.model_latency_ms)
            offer["created_at"] = now_us()
            try:
                value = encoder.encode(offer)
            except Exception as exc:  # the engine produced an invalid offer
                log.exception("offer for ticket %s does not encode", offer["ticket_id"])
                await dead_letter(event, exc, "engine")
            else:
                # Headers let edges index and measure the offer without decoding it.
                headers = [("expires_at", str(offer["expires_at"]).encode()),
                           ("login_accepted_at", str(offer["login_accepted_at"]).encode())]
                await send_until_acked(settings.offers_topic, offer["ticket_id"].encode(),
                                       value, headers)
                expiries.push(offer["expires_at"], offer["ticket_id"])
            # Not in a finally: a send cut short by shutdown stays unacked, so the
            # login is consumed again instead of being committed without its offer.
            await stream.ack(event)
        finally:
            limiter.release()

    def begin(event: EventT) -> dict[str, Any]:
        """The fast, ordered half of one login: decode, count it, compute the offer.

        Runs without awaiting, so a user's logins update the state in order.
        Raises PoisonMessage for anything that must go to the dead-letter topic.
        """
        try:
            login = codec.decode(event.value)
        except DecodeError as exc:
            raise PoisonMessage("decode", exc) from exc
        try:
            validate_login(login)
        except LoginRejected as exc:
            raise PoisonMessage("validate", exc) from exc
        state = load_state(users.get(login["user_id"]))
        position = Position(event.message.partition, event.message.offset)
        view, replayed = view_for_login(state, login["ticket_id"], position)
        try:
            offer = compute_offer(login, view, created_at=0)
        except Exception as exc:  # the engine failed on this login
            raise PoisonMessage("engine", exc) from exc
        if not replayed:
            users[login["user_id"]] = orjson.dumps(next_state(
                state, login["ticket_id"], view, position, login["login_accepted_at"],
                offer["country"], shown_categories(offer), login["expires_at"]))
        return offer

    @app.agent(logins)
    async def position(stream: StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await limiter.acquire()
            try:
                offer = begin(event)
            except PoisonMessage as poison:
                log.warning("poison message (%s): %r", poison.stage, poison.error)
                await dead_letter(event, poison.error, poison.stage)
                await manual.ack(event)
                limiter.release()
                continue
            except Exception as exc:  # a bug: keep the stream alive, keep the message
                log.exception("unexpected error on %s", event.message.tp)
                await dead_letter(event, exc, "worker")
                await manual.ack(event)
                limiter.release()
                continue
            task = asyncio.create_task(finish(manual, event, offer))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

    @app.timer(interval=settings.expiry_sweep_s)
    async def sweep_expired() -> None:
        """Tombstone offers whose tickets expired, so `offers` does not grow forever."""
        if not expiry_ready.is_set():
            horizon = now_us() - settings.tombstone_horizon_s * 1_000_000
            for _, stored in users.items():
                for entry in (load_state(stored) or {}).get("recent", ()):
                    if entry.get("expires_at", 0) > horizon:
                        expiries.push(entry["expires_at"], entry["ticket_id"])
            expiry_ready.set()
        for ticket_id in expiries.pop_due(now_us()):
            await send_until_acked(settings.offers_topic, ticket_id.encode(), None)

    return app
