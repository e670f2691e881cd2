"""Keeps the local store equal to the ``offers`` topic: every partition, no consumer group.

The consumer assigns itself every partition (so there are no rebalances and
every node holds every offer), seeks to the offsets stored with the data,
and applies what it fetches in batches: one RocksDB WriteBatch per fetch,
holding the records and the partitions' next offsets. Right after the write
it wakes the requests waiting for those tickets.

While catching up, records are stored as they come (Avro), so applying a
million offers does not decode a million records; the expiry and the login
time come from record headers the worker sets. Once caught up, each record
is decoded and stored as the JSON the node serves, so a lookup is a read and
nothing more.

Every record passes the same checks, live or catching up (``_to_change``):
a key that is a ticket id (22 base64url characters), a known Avro offer or a
tombstone, and headers that, when present, are ASCII digits; the expiry is
the header's when there is one, else the decoded offer's, on both paths. A
record that fails is counted (``edge_records_undecodable_total``), logged
with its partition and offset, skipped, never stored and never fatal. The
one check catching up leaves for later, that an offer's body decodes, is
made by the render pass, which deletes what a live node would have skipped,
so nodes reading the same topic end with the same state. A tombstone is
stored as a revocation until any ticket it concerns has expired, so a
revoked offer answers 410, not "pending".

With ``offer_signing=ed25519`` (the default) a record is served only if it
verifies (schemas/offer_signatures.py) against a key the verify file trusts,
tombstones included, and only if it is not older than what the store holds
for its ticket (edge/store.py). Live, each record is checked as it is
applied. Catching up, an unsigned record or a tombstone is checked at once,
and a signed offer is stored unchecked and checked when first read, by the
render pass, or as soon as it meets another record of its ticket, so a
bootstrap does not pay a check per record and ends in the same state. A
record that fails is counted (``edge_records_refused_total`` by reason),
logged with its partition and offset (or its ticket, when checked later),
and skipped or deleted, never served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from edge import unverified
from edge.metrics import EdgeMetrics
from edge.render import Refused, Renderer, undecodable
from edge.store import Change, OfferStore, StoredOffer
from edge.waiters import Waiters
from runtime.clock import now_us
from runtime.fetch_tuning import FetchTuning, adapt_to_traffic
from runtime.kafka_security import KafkaAccess
from runtime.offer_keys import VerifyKeyring
from runtime.retry import call_forever
from runtime.strict_parsing import ascii_int
from schemas.codec import HEADER_LEN, MAGIC, DecodeError, offer_codec
from schemas.events import EXPIRES_AT_HEADER, LOGIN_ACCEPTED_AT_HEADER
from schemas.offer_signatures import (
    SIG_HEADER,
    SIG_KID_HEADER,
    SIG_PROOF_HEADER,
    refusal_reason,
)
from schemas.tickets import TICKET_ID

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY_S = 5.0
SWEEP_EVERY_S = 0.25
SWEEP_SLICE = 1_000
KEY_LOOK_EVERY_S = 0.5
STALLED_CHECKS_BEFORE_RECONNECT = 2
DEFAULT_FETCH = FetchTuning()


@dataclass
class Progress:
    """Where the node stands, for /readyz and the tests."""

    resumed_from: dict[int, int] = field(default_factory=dict)
    targets: dict[int, int] = field(default_factory=dict)   # high watermarks seen at start
    next_offsets: dict[int, int] = field(default_factory=dict)
    applied_since_start: int = 0
    ready: bool = False
    caught_up_after_s: float | None = None       # connected to caught up; None until then
    applied_during_catch_up: int | None = None   # records applied by then; None until then
    rendered: bool = False   # no Avro left from catching up: every entry is served JSON


class NotRunning(RuntimeError):
    """A method that needs the Kafka clients was called before ``run`` made them."""


class Materializer:
    """Follows every partition of ``offers`` into the node's store (see the module doc).

    ``run`` owns the lifetime: it makes the consumer and the admin client,
    catches up, then follows until cancelled, and closes both. ``progress``
    says how far it got (readiness, lag, resume offsets).
    """

    def __init__(self, bootstrap_servers: str, topic: str, store: OfferStore, waiters: Waiters,
                 metrics: EdgeMetrics, ready_lag: int = 0, max_records: int = 20_000,
                 fetch: FetchTuning = DEFAULT_FETCH, *, access: KafkaAccess,
                 keyring: VerifyKeyring | None, renderer: Renderer) -> None:
        """``access``: how to connect; ``keyring``: the keys offers must be signed with
        (None: ``offer_signing=off``, nothing is checked); ``renderer``: how stored
        offers become JSON, checked with the keyring's keys. All required, so nothing
        is plaintext or trusted by omission."""
        self.bootstrap_servers = bootstrap_servers
        self.access = access
        self.topic = topic
        self.store = store
        self.waiters = waiters
        self.metrics = metrics
        self.ready_lag = ready_lag
        self.max_records = max_records
        self.fetch = fetch
        self.progress = Progress()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._codec = offer_codec()
        self.keyring = keyring
        self.renderer = renderer
        self._verifier = renderer.verifier
        self._next_key_look = 0.0
        self._known: set[bytes] = set()  # schema fingerprints seen to be readable
        self._started = time.monotonic()
        self._stalled_checks = 0
        self._last_position = -1
        self._caught_up = asyncio.Event()   # set with progress.ready

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The consumer ``run`` made.

        Raises:
            NotRunning: ``run`` has not made it yet.
        """
        if self._consumer is None:
            raise NotRunning("the materializer's consumer exists only inside run()")
        return self._consumer

    @property
    def admin(self) -> AIOKafkaAdminClient:
        """The admin client ``run`` made.

        Raises:
            NotRunning: ``run`` has not made it yet.
        """
        if self._admin is None:
            raise NotRunning("the materializer's admin client exists only inside run()")
        return self._admin

    async def run(self) -> None:
        """Connect, catch up, then follow the topic until cancelled."""
        self._consumer = self._new_consumer()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                          **self.access.aiokafka_options())
        renderer: asyncio.Task[None] | None = None
        try:
            await self._connect()
            renderer = asyncio.create_task(self._render_backlog())
            await self._follow()
        finally:
            if renderer is not None:
                renderer.cancel()
            await self._consumer.stop()
            await self._admin.close()

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", metadata_max_age_ms=10_000,
            fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=self.fetch.wait_ms, fetch_min_bytes=self.fetch.min_bytes,
            check_crcs=False, **self.access.aiokafka_options())

    async def _start(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.start()
        adapt_to_traffic(consumer, self.fetch)

    async def _connect(self) -> None:
        """Connect (retrying forever, logging each failure), then assign and seek."""
        consumer, admin = self.consumer, self.admin
        # The broker may not be reachable yet: keep trying, loudly.
        await call_forever(lambda: self._start(consumer),
                           f"connecting the consumer to Kafka at {self.bootstrap_servers}", log)
        await call_forever(admin.start,
                           f"connecting the admin client to Kafka at {self.bootstrap_servers}", log)
        self._started = time.monotonic()
        stored = self.store.offsets()
        self.progress.resumed_from = dict(stored)
        self.progress.next_offsets = dict(stored)
        await self._assign(await self._wait_for_partitions())
        log.info("materializing %s from stored offsets %s; catching up to %s", self.topic,
                 stored or "(none: from the beginning)", self.progress.targets)
        self._check_ready()

    async def _partitions(self) -> set[int]:
        """The topic's partitions, asked of the cluster now (not from a cache)."""
        (topic,) = await self.admin.describe_topics([self.topic])
        if topic["error_code"] != 0:
            return set()
        return {p["partition"] for p in topic["partitions"]}

    async def _wait_for_partitions(self) -> set[int]:
        while True:
            partitions = await self._partitions()
            if partitions:
                return partitions
            log.warning("topic %s does not exist yet; waiting", self.topic)
            await asyncio.sleep(1.0)

    async def _assign(self, partitions: set[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        new = [tp for tp in tps if tp.partition not in self.progress.targets]
        self.consumer.assign(tps)
        for tp in tps:
            offset = self.progress.next_offsets.get(tp.partition)
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        if new:
            ends = await self.consumer.end_offsets(new)
            for tp, end in ends.items():
                self.progress.targets[tp.partition] = end

    async def _follow(self) -> None:
        next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY_S
        next_sweep = time.monotonic() + SWEEP_EVERY_S
        while True:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
            if batches:
                self.apply(batches)
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + SWEEP_EVERY_S
            if now >= next_housekeeping:
                try:
                    await self._housekeeping()
                except Exception as exc:  # the broker may be away: keep following, say so
                    log.warning("housekeeping failed (%r); will retry", exc)
                next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY_S

    def apply(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Write one fetch to the store atomically, then wake its waiters."""
        applied_at = now_us()
        changes: list[Change] = []
        sources: list[ConsumerRecord] = []
        accepted: list[int] = []
        next_offsets: dict[int, int] = {}
        live = self.progress.ready  # positioning latency means something only when live
        for tp, records in batches.items():
            for record in records:
                change, accepted_at = self._to_change(record, live)
                if change is not None:
                    changes.append(change)
                    sources.append(record)
                    accepted.append(accepted_at)
            if records:
                next_offsets[tp.partition] = records[-1].offset + 1
        done = self.store.apply(changes, next_offsets, applied_at, logged=live,
                                verify=None if self._verifier is None else self.renderer.check)
        if done.stale or done.refused or done.dropped:
            for i in done.stale:
                self._refuse(sources[i], "stale", "older than the record this edge holds for "
                             "its ticket (a replay)")
            for i, why in done.refused:
                if undecodable(why):
                    self._skip(sources[i], why)
                else:
                    self._refuse_unverified(sources[i], why)
            for ticket_id, why in done.dropped:
                self._refuse_stored(ticket_id, why)
            gone = set(done.stale) | {i for i, _ in done.refused}
            changes = [c for i, c in enumerate(changes) if i not in gone]
            accepted = [a for i, a in enumerate(accepted) if i not in gone]
        login_times = [a for a in accepted if a] if live else []
        self.progress.next_offsets.update(next_offsets)
        self.progress.applied_since_start += len(changes)
        self.metrics.applied.inc(len(changes))
        for accepted_at in login_times:
            self.metrics.positioning_seconds.observe(max(0, applied_at - accepted_at) / 1e6)
        revoked_until = applied_at + self.store.remember_revoked_us
        self.waiters.notify(
            (c.ticket_id, StoredOffer(c.expires_at, applied_at, c.payload, c.is_json, False,
                                      c.unverified)
             if c.payload is not None else StoredOffer(revoked_until, applied_at, b"", False, True))
            for c in changes)
        if not self.progress.ready:
            self._check_ready()

    def _skip(self, record: ConsumerRecord, why: str) -> tuple[None, int]:
        self.metrics.undecodable.inc()
        log.warning("offers record at partition %d offset %d skipped: %s", record.partition,
                    record.offset, why)
        return None, 0

    def _refuse(self, record: ConsumerRecord, reason: str, why: str) -> tuple[None, int]:
        """Count and log a record that is well formed but not to be trusted; skip it."""
        self.metrics.refused.labels(self.metrics.region, reason).inc()
        log.warning("offers record at partition %d offset %d refused: %s", record.partition,
                    record.offset, why)
        return None, 0

    def _refuse_stored(self, ticket_id: bytes, why: str) -> None:
        """Count and log a stored, not yet checked offer that failed its check (deleted)."""
        if undecodable(why):
            self.metrics.undecodable.inc()
        else:
            self.metrics.refused.labels(self.metrics.region, refusal_reason(why)).inc()
        log.warning("stored offer %s refused when checked, and deleted: %s",
                    ticket_id.decode(errors="replace"), why)

    def _refuse_unverified(self, record: ConsumerRecord, why: str) -> tuple[None, int]:
        return self._refuse(record, refusal_reason(why), why)

    def _to_change(self, record: ConsumerRecord, live: bool) -> tuple[Change | None, int]:
        """The change a record makes, and its login time (0 if unknown or a tombstone).

        The same checks live and catching up (see the module docstring).
        Catching up, a record with an expiry header is stored as it is, and
        rendered to JSON later; live, or without the header, it is decoded and
        stored as the JSON it is served as, so a lookup is a read only.
        """
        key = record.key
        if key is None or not TICKET_ID.fullmatch(key):
            return self._skip(record, "its key is not a ticket id")
        value = record.value
        expires_at = accepted_at = 0
        kid = proof = signature = None
        for name, raw in record.headers:
            if name == EXPIRES_AT_HEADER or name == LOGIN_ACCEPTED_AT_HEADER:
                try:
                    number = ascii_int(raw, f"header {name}")
                except ValueError as exc:
                    return self._skip(record, str(exc))
                if name == EXPIRES_AT_HEADER:
                    expires_at = number
                else:
                    accepted_at = number
            elif name == SIG_HEADER:
                signature = raw
            elif name == SIG_PROOF_HEADER:
                proof = raw
            elif name == SIG_KID_HEADER:
                kid = raw
        if value is not None and (value[:2] != MAGIC or value[2:HEADER_LEN] not in self._known):
            if len(value) < HEADER_LEN or not self._codec.knows(value[2:HEADER_LEN]):
                return self._skip(record, "not a known Avro offer")
            self._known.add(value[2:HEADER_LEN])
        verifier = self._verifier
        if verifier is not None:
            if kid is None or proof is None or signature is None:
                return self._refuse_unverified(record, "unsigned")
            if expires_at and not live and value is not None:
                # Catching up: stored unchecked, checked when first read or rendered, or at
                # once if it meets another record of its ticket (edge/store.py).
                return Change(key, unverified.pack(kid, proof, signature, accepted_at, value),
                              expires_at, unverified=True), accepted_at
            why = verifier.check_record(key, value, expires_at, accepted_at, kid, proof, signature)
            if why is not None and refusal_reason(why) == "untrusted_key" and self._look_for_keys():
                why = verifier.check_record(key, value, expires_at, accepted_at, kid, proof,
                                            signature)
            if why is not None:
                return self._refuse_unverified(record, why)
        if value is None:
            return Change(key, None, expires_at), 0
        if expires_at and not live:
            return Change(key, value, expires_at), accepted_at
        try:
            offer = self._codec.decode(value)
        except DecodeError as exc:
            return self._skip(record, f"does not decode ({exc})")
        return (Change(key, orjson.dumps(offer), expires_at or offer["expires_at"], is_json=True),
                accepted_at or offer["login_accepted_at"])

    async def _render_backlog(self) -> None:
        """After catching up, store what arrived as Avro as the JSON it is served as.

        Small synchronous slices with a yield between them, so lookups and
        live records go on meanwhile; one full pass with nothing left ends it.
        """
        await self._caught_up.wait()
        if self.store.all_json:
            self.progress.rendered = True
            return
        started = time.monotonic()
        total = 0
        pass_rendered = 0
        while True:
            rendered, finished, dropped = self.store.render_slice(self.renderer.avro)
            for ticket_id, error in dropped:
                if isinstance(error, Refused) and not undecodable(str(error)):
                    self._refuse_stored(ticket_id, str(error))
                    continue
                self.metrics.undecodable.inc()
                log.warning("stored offer %s does not decode; deleted, as a live node would "
                            "have skipped its record", ticket_id.decode(errors="replace"))
            total += rendered
            pass_rendered += rendered
            if finished:
                if pass_rendered == 0:
                    break
                pass_rendered = 0
            await asyncio.sleep(0)
        self.store.mark_all_json()
        self.progress.rendered = True
        log.info("all stored offers are served JSON (rendered %d in %.1fs)", total,
                 time.monotonic() - started)

    def _check_ready(self) -> None:
        behind = {p: target - self.progress.next_offsets.get(p, 0)
                  for p, target in self.progress.targets.items()}
        if all(lag <= self.ready_lag for lag in behind.values()):
            self.store.make_durable()
            self.progress.ready = True
            self._caught_up.set()
            self.progress.caught_up_after_s = round(time.monotonic() - self._started, 3)
            self.progress.applied_during_catch_up = self.progress.applied_since_start
            log.info("caught up with %s after %.2fs (%d records applied)", self.topic,
                     self.progress.caught_up_after_s, self.progress.applied_since_start)

    async def _watch_for_stall(self) -> None:
        """Update lag from fresh end offsets; reconnect if records wait and nothing moves.

        aiokafka's fetcher can stop fetching for good after a broker restart,
        with records waiting: a new consumer, seeked to the offsets stored
        with the data, picks up exactly where the old one stopped.
        """
        tps = [TopicPartition(self.topic, p) for p in self.progress.targets]
        try:
            ends = await asyncio.wait_for(self.consumer.end_offsets(tps), timeout=5)
        except Exception as exc:  # the broker is away, or the client is wedged
            log.warning("cannot read end offsets of %s (%r)", self.topic, exc)
            ends = None
        position = sum(self.progress.next_offsets.values())
        waiting = False  # unknown while the broker does not answer: no reconnect then
        if ends is not None:
            for tp, end in ends.items():
                lag = max(0, end - self.progress.next_offsets.get(tp.partition, 0))
                self.metrics.lag.labels(self.metrics.region, str(tp.partition)).set(lag)
                waiting = waiting or lag > 0
        stalled = waiting and position == self._last_position
        self._stalled_checks = self._stalled_checks + 1 if stalled else 0
        self._last_position = position
        if self._stalled_checks >= STALLED_CHECKS_BEFORE_RECONNECT:
            log.warning("no progress on %s for %d checks with records waiting; reconnecting "
                        "from the stored offsets", self.topic, self._stalled_checks)
            await self._reconnect()
            self._stalled_checks = 0

    async def _reconnect(self) -> None:
        """Replace the consumer with a new one at the stored offsets (the old one is kept
        if the new one cannot start)."""
        fresh = self._new_consumer()
        try:
            await asyncio.wait_for(self._start(fresh), timeout=10)
        except Exception:
            await fresh.stop()
            raise
        old, self._consumer = self._consumer, fresh
        await self._assign(set(self.progress.targets))
        if old is not None:
            try:
                await asyncio.wait_for(old.stop(), timeout=5)
            except Exception as exc:  # a wedged client may not stop cleanly; it is dropped
                log.warning("stopping the old consumer failed (%r)", exc)

    def _look_for_keys(self) -> bool:
        """A record names a key this node does not trust: read the verify file now, in case
        a rotation published it a moment ago (at most every ``KEY_LOOK_EVERY_S``). True if
        the trusted keys changed."""
        now = time.monotonic()
        if self.keyring is None or now < self._next_key_look:
            return False
        self._next_key_look = now + KEY_LOOK_EVERY_S
        changed = self.keyring.refresh(now_us(), force=True)
        if changed and self._verifier is not None:
            self._verifier.forget()
            log.info("trusting offer keys %s", sorted(self.keyring.trusted))
        return changed

    def refresh_keys(self) -> None:
        """Re-read a changed verify file; a change of trusted keys drops remembered roots."""
        if self.keyring is None or self._verifier is None:
            return
        if self.keyring.refresh(now_us()):
            self._verifier.forget()
            log.info("trusting offer keys %s", sorted(self.keyring.trusted))
        if self.keyring.problem:
            log.error("the verify file is unusable, so the keys read before stay: %s",
                      self.keyring.problem)

    async def _housekeeping(self) -> None:
        """Notice new partitions and key changes, update lag gauges."""
        self.refresh_keys()
        partitions = await self._partitions()
        if partitions - set(self.progress.targets):
            log.info("%s now has %d partitions; assigning the new ones", self.topic, len(partitions))
            await self._assign(partitions | set(self.progress.targets))
        await self._watch_for_stall()

    def _sweep(self) -> None:
        """Delete the expired offers among the next slice of the store.

        A slice of ``SWEEP_SLICE`` entries every ``SWEEP_EVERY_S``: walking
        RocksDB holds the event loop, so small slices often rather than large
        ones seldom, which would hold lookups back.
        """
        removed = self.store.sweep_expired(now_us(), limit=SWEEP_SLICE)
        if removed:
            self.metrics.swept.inc(removed)
