"""The worker's processing of logins, with a plain dict standing in for the Faust table.

A fake ``send`` records what the worker produces (and can hold a send open,
as a paused broker would), so every path of a login is checked without Kafka:
counted, replayed, dead-lettered, skipped, read from a gap, cut short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust.types import TP
from tenacity import wait_none

from engine.state import Position
from pipeline.gap_reader import SourceRecord
from pipeline.offset_ledger import OffsetLedger
from pipeline.readiness import not_ready_because, readiness_body, ready_url
from pipeline.worker import (
    Deliveries,
    Health,
    Incoming,
    LoginProcessor,
    OutRecord,
    PoisonMessage,
    WorkerMetrics,
)
from runtime.settings import Settings
from runtime.waiting import wait_until_async
from schemas.codec import login_codec, offer_codec
from schemas.events import offer_headers

CODEC = login_codec()
SETTINGS = Settings(logins_topic="logins", offers_topic="offers", dlq_topic="logins.dlq",
                    worker_concurrency=4, model_latency_ms=0.0)
TP0 = TP("logins", 0)


def event(ticket: str, at: int = 1_000_000, user: str = "ada") -> bytes:
    return CODEC.encode({"ticket_id": ticket, "user_id": user, "ip": "81.2.69.160",
                         "user_agent": None, "login_accepted_at": at,
                         "expires_at": at + 900_000_000})


def record(offset: int, value: bytes | None, key: bytes = b"ada") -> SourceRecord:
    return SourceRecord("logins", 0, offset, key, value)


class Sent:
    """A fake outbox (``Deliveries``): records every record once acknowledged; ``hold`` keeps
    records from being acknowledged, as a paused broker would."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None, dict[str, bytes]]] = []
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.batches: list[int] = []          # records per enqueue

    async def send(self, topic: str, key: bytes, value: bytes | None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        await (await self.enqueue([OutRecord(topic, key, value, headers)])).acknowledged()

    async def enqueue(self, records: Sequence[OutRecord]) -> Any:
        self.entered.set()
        self.batches.append(len(records))
        sent = self

        class Sending:
            async def acknowledged(self) -> None:
                if sent.hold is not None:
                    await sent.hold.wait()
                sent.records.extend((r.topic, r.key, r.value, dict(r.headers or []))
                                    for r in records)
        return Sending()


class Acks:
    def __init__(self) -> None:
        self.offsets: list[int] = []

    def for_offset(self, offset: int) -> Any:
        async def ack() -> None:
            self.offsets.append(offset)
        return ack


async def no_gap(bootstrap_servers: str, topic: str, partition: int, start: int,
                 end: int) -> list[SourceRecord]:
    raise AssertionError(f"no gap was expected, yet {topic}[{partition}] {start}..{end} was read")


def make(users: dict[str, bytes] | None = None, read_gap: Any = None,
         settings: Settings = SETTINGS) -> tuple[LoginProcessor, Sent, OffsetLedger, WorkerMetrics]:
    sent, ledger, metrics = Sent(), OffsetLedger("logins"), WorkerMetrics()
    processor = LoginProcessor({} if users is None else users, settings, sent, ledger, metrics,
                               read_gap=no_gap if read_gap is None else read_gap,
                               signing=None)
    return processor, sent, ledger, metrics


async def settle(processor: LoginProcessor) -> None:
    """Wait for every login's slow half the processor started."""
    await asyncio.wait_for(asyncio.gather(*processor.in_flight), 10)


async def free_slots(processor: LoginProcessor) -> int:
    """How many logins the pool would take now (counted by taking and giving back its slots)."""
    taken = 0
    while not processor.limiter.locked():
        await processor.limiter.acquire()
        taken += 1
    for _ in range(taken):
        processor.limiter.release()
    return taken


def logins(metrics: WorkerMetrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("worker_logins_total", {"outcome": outcome})


def test_each_login_is_counted_once_and_a_replay_gets_the_same_offer() -> None:
    users: dict[str, bytes] = {}
    processor = make(users)[0]
    first = processor.begin(event("t1"), Position(0, 0))
    second = processor.begin(event("t2"), Position(0, 1))
    replay = processor.begin(event("t1"), Position(0, 0))
    assert (first.offer["visit"], second.offer["visit"]) == (1, 2)
    assert replay.offer == first.offer and not replay.counted  # created_at included
    assert first.offer["created_at"] > 0
    assert orjson.loads(users["ada"])["visits"] == 2


def test_a_retry_with_the_same_ticket_id_counts_once_and_keeps_the_later_expiry() -> None:
    processor = make()[0]
    first = processor.begin(event("idem", at=1_000_000), Position(0, 0))
    retry = processor.begin(event("idem", at=4_000_000), Position(0, 7))
    assert not retry.counted and retry.offer["visit"] == first.offer["visit"] == 1
    assert retry.offer["expires_at"] == 4_000_000 + 900_000_000
    assert retry.offer["items"] == first.offer["items"]
    # A replay of the retry (its offset) is known as well, and the next login is visit 2.
    assert not processor.begin(event("idem", at=4_000_000), Position(0, 7)).counted
    assert processor.begin(event("t3"), Position(0, 8)).offer["visit"] == 2
    # The first attempt delivered after the retry (another origin's producer) keeps
    # the later expiry too.
    late = processor.begin(event("idem", at=1_000_000), Position(0, 9))
    assert late.offer["expires_at"] == 4_000_000 + 900_000_000


@pytest.mark.parametrize("value,stage", [(b"garbage", "decode"), (None, "decode")])
def test_undecodable_logins_are_poison(value: bytes | None, stage: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        make()[0].begin(value, Position(0, 0))
    assert caught.value.stage == stage


async def test_a_login_becomes_an_offer_then_is_finished_and_acked() -> None:
    processor, sent, ledger, metrics = make()
    acks = Acks()
    await processor.on_event(TP0, record(5, event("t1")), acks.for_offset(5))
    await settle(processor)
    [(topic, key, value, headers)] = sent.records
    assert (topic, key) == ("offers", b"t1")
    assert value is not None and offer_codec().decode(value)["visit"] == 1
    assert headers == dict(offer_headers(offer_codec().decode(value)))
    assert acks.offsets == [5]
    assert ledger.safe_offset(TP0) == 6 and ledger.in_flight() == 0
    assert logins(metrics, "positioned") == 1
    assert await free_slots(processor) == SETTINGS.worker_concurrency  # its slot given back


async def test_a_poison_login_is_dead_lettered_with_its_error_and_the_stream_goes_on() -> None:
    processor, sent, ledger, metrics = make()
    acks = Acks()
    await processor.on_event(TP0, record(0, b"garbage"), acks.for_offset(0))
    await processor.on_event(TP0, record(1, event("t1")), acks.for_offset(1))
    await settle(processor)
    (dlq_topic, dlq_key, dlq_value, headers), (offer_topic, *_) = sent.records
    assert (dlq_topic, dlq_key, dlq_value) == ("logins.dlq", b"ada", b"garbage")
    assert headers["error.stage"] == b"decode" and headers["source.offset"] == b"0"
    assert headers["source.topic"] == b"logins" and headers["source.partition"] == b"0"
    assert offer_topic == "offers"
    assert acks.offsets == [0, 1] and ledger.safe_offset(TP0) == 2
    assert logins(metrics, "dead_lettered") == 1 and logins(metrics, "positioned") == 1


async def test_a_replayed_login_that_fails_again_keeps_its_provenance_only() -> None:
    processor, sent, _, _ = make()
    replayed = SourceRecord("logins", 0, 7, b"ada", b"still garbage",
                            [("replayed_from", b"logins.dlq:2:41"), ("replayed_at", b"123"),
                             ("other", b"dropped")])
    await processor.on_event(TP0, replayed, Acks().for_offset(7))
    await settle(processor)
    ((_, _, value, headers),) = sent.records
    assert value == b"still garbage" and headers["source.offset"] == b"7"
    assert headers["replayed_from"] == b"logins.dlq:2:41" and headers["replayed_at"] == b"123"
    assert "other" not in headers


async def test_an_event_handed_over_again_is_acked_and_does_nothing() -> None:
    processor, sent, ledger, metrics = make()
    acks = Acks()
    await processor.on_event(TP0, record(0, event("t1")), acks.for_offset(0))
    await settle(processor)
    await processor.on_event(TP0, record(0, event("t1")), acks.for_offset(0))
    assert len(sent.records) == 1 and acks.offsets == [0, 0]
    assert logins(metrics, "positioned") == 1 and logins(metrics, "repeated") is None


async def test_offsets_faust_skipped_are_read_and_processed_first_in_order() -> None:
    asked: list[tuple[int, int]] = []

    async def read_gap(bootstrap_servers: str, topic: str, partition: int, start: int,
                       end: int) -> list[SourceRecord]:
        asked.append((start, end))
        return [record(o, event(f"t{o}")) for o in range(start, end)]

    processor, sent, ledger, metrics = make(read_gap=read_gap)
    acks = Acks()
    await processor.on_event(TP0, record(0, event("t0")), acks.for_offset(0))
    await processor.on_event(TP0, record(3, event("t3")), acks.for_offset(3))
    await settle(processor)
    assert asked == [(1, 3)]
    assert [key for _, key, _, _ in sent.records] == [b"t0", b"t1", b"t2", b"t3"]
    visits = [offer_codec().decode(v)["visit"] for _, _, v, _ in sent.records if v]
    assert visits == [1, 2, 3, 4]
    assert acks.offsets == [0, 3]            # gap records have no Faust event to ack
    assert ledger.safe_offset(TP0) == 4
    assert metrics.registry.get_sample_value("worker_offset_gaps_total") == 1


async def test_a_login_whose_send_never_returns_is_never_finished() -> None:
    processor, sent, ledger, _ = make()
    sent.hold = asyncio.Event()
    acks = Acks()
    await processor.on_event(TP0, record(0, event("t1")), acks.for_offset(0))
    [task] = processor.in_flight
    await asyncio.wait_for(sent.entered.wait(), 10)
    task.cancel()                             # the worker shuts down mid-send
    with pytest.raises(asyncio.CancelledError):
        await task
    assert acks.offsets == [] and ledger.in_flight() == 1 and ledger.safe_offset(TP0) == 0
    assert await free_slots(processor) == SETTINGS.worker_concurrency


async def test_the_pool_bounds_the_logins_in_flight() -> None:
    processor, sent, _, _ = make()
    sent.hold = asyncio.Event()
    for offset in range(SETTINGS.worker_concurrency):
        await processor.on_event(TP0, record(offset, event(f"t{offset}")), None)
    one_more = asyncio.create_task(processor.on_event(
        TP0, record(SETTINGS.worker_concurrency, event("late")), None))
    done, _ = await asyncio.wait({one_more}, timeout=0.2)
    assert not done and len(processor.in_flight) == SETTINGS.worker_concurrency
    sent.hold.set()
    await asyncio.wait_for(one_more, 10)
    await settle(processor)
    assert len(sent.records) == SETTINGS.worker_concurrency + 1


async def test_a_tombstone_is_a_null_offer_carrying_the_expiry_it_ends() -> None:
    processor, sent, _, _ = make()
    await processor.tombstones([(b"t9", 1234), (b"t8", 99)])
    assert sent.records == [("offers", b"t9", None, {"expires_at": b"1234"}),
                            ("offers", b"t8", None, {"expires_at": b"99"})]
    assert sent.batches == [2]  # handed over (and signed) together


async def test_a_batchs_offers_and_tombstones_are_signed_and_verify_at_an_edge(
        tmp_path: Path) -> None:
    from pipeline.offer_signing import BatchSigning
    from runtime.offer_keys import (
        SigningKeyring,
        VerifyKeyring,
        ensure_local_offer_keys,
        signing_keys_file,
        verify_keys_file,
    )
    from schemas.offer_signatures import OfferVerifier, SignedFields

    settings = SETTINGS.replace(home=tmp_path)
    ensure_local_offer_keys(settings)
    signing = BatchSigning("offers", SigningKeyring(signing_keys_file(settings)), 6)
    sent, ledger, metrics = Sent(), OffsetLedger("logins"), WorkerMetrics()
    processor = LoginProcessor({}, settings, sent, ledger, metrics, read_gap=no_gap,
                               signing=signing)
    acks = Acks()
    await processor.on_batch([Incoming(TP("logins", 0), record(o, event(f"tk{o}")),
                                       acks.for_offset(o)) for o in range(3)]
                             + [Incoming(TP("logins", 0), record(3, b"junk"), acks.for_offset(3))])
    await settle(processor)
    await processor.tombstones([(b"gone", 77)])
    verifier = OfferVerifier("offers", VerifyKeyring(verify_keys_file(settings)).get)
    checked = 0
    for topic, key, value, headers in sent.records:
        if topic != "offers":
            assert "sig" not in headers  # a dead letter is not an offer
            continue
        fields = SignedFields(key, value, int(headers["expires_at"]),
                              int(headers.get("login_accepted_at", b"0")))
        assert verifier.check(fields, headers["sig.kid"], headers["sig.proof"],
                              headers["sig"]) is None
        moved = fields._replace(key=b"another-ticket")
        assert verifier.check(moved, headers["sig.kid"], headers["sig.proof"],
                              headers["sig"]) is not None
        checked += 1
    assert checked == 4


async def test_deliveries_retry_past_any_attempt_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A send is never given up on: 12,000 failures, then the ack, and each failure counted."""
    from runtime import retry

    monkeypatch.setattr(retry, "BACKOFF", wait_none())
    failures = 12_000

    class Producer:
        calls = 0

        async def send(self, *args: object) -> asyncio.Future[None]:
            Producer.calls += 1
            if Producer.calls <= failures:
                raise ConnectionError("broker away")
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    deliveries = Deliveries(SimpleNamespace(producer=Producer()), WorkerMetrics())
    await deliveries.send("offers", b"t1", b"offer")
    assert Producer.calls == failures + 1
    assert deliveries.oldest_pending_s() == 0.0
    registry = deliveries.metrics.registry
    assert registry.get_sample_value("worker_send_failures_total") == failures


def test_readiness_names_the_first_condition_that_fails() -> None:
    ok = {"started": True, "agent_running": True, "rebalancing": False, "recovering": False}
    assert not_ready_because(**ok) is None
    assert "starting" in str(not_ready_because(**{**ok, "started": False, "rebalancing": True}))
    assert "agent" in str(not_ready_because(**{**ok, "agent_running": False}))
    assert "rebalancing" in str(not_ready_because(**{**ok, "rebalancing": True}))
    assert "recovering" in str(not_ready_because(**{**ok, "recovering": True}))
    assert readiness_body(None, [0, 2]) == (200, {"ready": True, "partitions": [0, 2]})
    assert readiness_body("busy", [0]) == (503, {"ready": False, "reason": "busy"})
    assert ready_url(6066) == "http://127.0.0.1:6066/ready/"
    with pytest.raises(ValueError):
        ready_url(0)


def test_health_reports_ready_with_the_logins_partitions_it_holds() -> None:
    assignment = {TP("logins", 2), TP("logins", 0), TP("user-state-changelog", 1)}
    app = SimpleNamespace(rebalancing=False, in_recovery=False,
                          consumer=SimpleNamespace(assignment=lambda: assignment))
    agent = SimpleNamespace(started=True, crashed=False)
    health = Health(app, SETTINGS, OffsetLedger("logins"), Deliveries(app, WorkerMetrics()),  # type: ignore[arg-type]
                    SimpleNamespace(), WorkerMetrics())  # type: ignore[arg-type]
    assert health.readiness() == (503, {"ready": False, "reason":
                                        "starting: the first table recovery has not finished"})
    health.started = True
    assert health.readiness()[0] == 503       # no agent yet
    health.agent = agent  # type: ignore[assignment]
    assert health.readiness() == (200, {"ready": True, "partitions": [0, 2]})
    app.rebalancing = True
    assert health.readiness() == (503, {"ready": False,
                                        "reason": "the consumer group is rebalancing"})


def breaker_processor(threshold: int, base: Settings = SETTINGS,
                      ) -> tuple[LoginProcessor, Sent, OffsetLedger, WorkerMetrics]:
    sent, ledger, metrics = Sent(), OffsetLedger("logins"), WorkerMetrics()
    settings = base.replace(breaker_dead_letters=threshold)
    processor = LoginProcessor({}, settings, sent, ledger, metrics, read_gap=no_gap, signing=None)
    return processor, sent, ledger, metrics


async def test_the_breaker_trips_after_dead_letters_of_one_type_in_a_row() -> None:
    processor, sent, ledger, metrics = breaker_processor(3)
    acks = Acks()
    for offset in range(3):
        await processor.on_event(TP0, record(offset, b"garbage"), acks.for_offset(offset))
    assert processor.breaker.tripped
    assert "3 logins in a row dead-lettered with MalformedMessage at stage decode" in str(
        processor.breaker.reason)
    # The login after the trip is never begun: not dead-lettered, not finished, not acked.
    after = asyncio.create_task(processor.on_event(TP0, record(3, event("t3")),
                                                   acks.for_offset(3)))
    done, _ = await asyncio.wait({after}, timeout=0.2)
    assert not done
    assert [topic for topic, *_ in sent.records] == ["logins.dlq"] * 3
    assert acks.offsets == [0, 1, 2] and ledger.safe_offset(TP0) == 3
    assert logins(metrics, "dead_lettered") == 3 and logins(metrics, "positioned") is None
    after.cancel()                            # the worker stops
    with pytest.raises(asyncio.CancelledError):
        await after
    assert ledger.safe_offset(TP0) == 3


async def test_a_processed_login_or_another_error_type_starts_the_count_again() -> None:
    processor, sent, _, _ = breaker_processor(3)
    unknown = b"\xc3\x01" + b"\x00" * 8       # single-object encoded, unknown writer schema
    values = [b"garbage", b"garbage", event("t2"), b"garbage", b"garbage", unknown,
              b"garbage", b"garbage"]
    for offset, value in enumerate(values):
        await processor.on_event(TP0, record(offset, value), None)
        await settle(processor)               # the offer is acknowledged before the next
    assert not processor.breaker.tripped
    assert (processor.breaker.error_type, processor.breaker.in_a_row) == ("MalformedMessage", 2)
    assert len(sent.records) == len(values)


class NoExpiries:
    """The expirer's index as ``Health.status`` reads it, empty."""

    loading: set[int] = set()

    def __len__(self) -> int:
        return 0


def test_a_tripped_breaker_makes_the_worker_unready_and_unhealthy_with_the_reason() -> None:
    processor = breaker_processor(1)[0]
    app = SimpleNamespace(rebalancing=False, in_recovery=False,
                          consumer=SimpleNamespace(assignment=lambda: {TP("logins", 0)}))
    ledger = OffsetLedger("logins")
    health = Health(app, SETTINGS, ledger, Deliveries(app, WorkerMetrics()),  # type: ignore[arg-type]
                    SimpleNamespace(index=NoExpiries()),  # type: ignore[arg-type]
                    WorkerMetrics(), processor.breaker)
    health.started = True
    health.agent = SimpleNamespace(started=True, crashed=False)  # type: ignore[assignment]
    assert health.readiness()[0] == 200 and health.status()[0] == 200
    assert processor.breaker.dead_lettered("UnknownSchema", "fingerprint 00", "decode")
    code, body = health.readiness()
    assert code == 503 and body["reason"].startswith("circuit breaker open: 1 logins in a row "
                                                     "dead-lettered with UnknownSchema")
    code, status = health.status()
    assert code == 503 and not status["ready"] and status["breaker"] == body["reason"]
    assert not_ready_because(started=False, agent_running=False, rebalancing=True,
                             recovering=True, tripped="x") == "x"


class Highwaters:
    """The consumer as ``Health.partition_lag`` reads it: an assignment and its high watermarks."""

    def __init__(self, highwaters: dict[TP, int | None]) -> None:
        self.highwaters = highwaters

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]


def test_the_partition_lag_metric_is_the_high_watermark_minus_the_commit() -> None:
    tp1, tp2, moved = TP("logins", 1), TP("logins", 2), TP("logins", 5)
    consumer = Highwaters({TP0: 12, tp1: 30, tp2: None})
    app = SimpleNamespace(consumer=consumer)
    ledger = OffsetLedger("logins")
    ledger.restart({TP0: 10, tp1: 30, tp2: 0, moved: 4})
    for offset in (10, 11):
        _, generation = ledger.admit(TP0, offset)
        ledger.finish(TP0, offset, generation)
    ledger.committed(ledger.fence({}))        # partition 0 committed up to 12
    consumer.highwaters[TP0] = 20             # 8 more logins arrived
    health = Health(app, SETTINGS, ledger, Deliveries(app, WorkerMetrics()),  # type: ignore[arg-type]
                    SimpleNamespace(index=NoExpiries()),  # type: ignore[arg-type]
                    WorkerMetrics())
    # Partition 2: no high watermark fetched yet; partition 5: no longer assigned.
    assert health.partition_lag() == {0: 8, 1: 0}
    health.deliveries.oldest_pending_s = lambda: 0.0  # type: ignore[method-assign]
    page = health.exposition().decode()
    assert 'worker_partition_lag{partition="0"} 8.0' in page
    assert 'worker_partition_lag{partition="1"} 0.0' in page
    assert 'partition="2"' not in page and 'partition="5"' not in page


# -- batches ---------------------------------------------------------------------------------

BATCHING = SETTINGS.replace(worker_concurrency=16)   # batches of up to 8 logins

class CountingUsers(dict[str, bytes]):
    """A table stand-in that counts the writes per user."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: dict[str, int] = {}

    def __setitem__(self, user_id: str, state: bytes) -> None:
        self.writes[user_id] = self.writes.get(user_id, 0) + 1
        super().__setitem__(user_id, state)


def incoming(offset: int, value: bytes | None, acks: Acks, user: str = "ada",
             partition: int = 0) -> Incoming:
    return Incoming(TP("logins", partition), SourceRecord("logins", partition, offset,
                                                          user.encode(), value),
                    acks.for_offset(offset), event=f"event-{partition}@{offset}")


def offers_of(sent: Sent) -> list[dict[str, Any]]:
    return [offer_codec().decode(v) for topic, _, v, _ in sent.records
            if topic == "offers" and v is not None]


async def test_a_batch_counts_each_users_logins_in_offset_order_and_writes_each_user_once(
        ) -> None:
    users = CountingUsers()
    processor, sent, ledger, metrics = make(users, settings=BATCHING)
    current: list[Any] = []
    processor.make_current = current.append
    acks = Acks()
    users_in_order = ["ada", "bob", "ada", "ada", "bob"]
    await processor.on_batch([incoming(o, event(f"t{o}", user=u), acks, user=u)
                              for o, u in enumerate(users_in_order)])
    await settle(processor)
    assert sent.batches == [5]                              # one enqueue for the batch
    assert [o["ticket_id"] for o in offers_of(sent)] == ["t0", "t1", "t2", "t3", "t4"]
    assert [(o["user_id"], o["visit"]) for o in offers_of(sent)] == [
        ("ada", 1), ("bob", 1), ("ada", 2), ("ada", 3), ("bob", 2)]
    assert users.writes == {"ada": 1, "bob": 1}
    assert orjson.loads(users["ada"])["visits"] == 3 and orjson.loads(users["bob"])["visits"] == 2
    assert orjson.loads(users["ada"])["last_offset"] == 3
    # Each login's event is current when its user's state is read, and each write goes
    # out with the event of its user's last login current (its partition).
    assert current == [f"event-0@{o}" for o in range(5)] + ["event-0@3", "event-0@4"]
    assert acks.offsets == [0, 1, 2, 3, 4] and ledger.safe_offset(TP0) == 5
    assert logins(metrics, "positioned") == 5
    assert metrics.registry.get_sample_value("worker_batch_logins_count") == 1
    assert await free_slots(processor) == BATCHING.worker_concurrency


async def test_the_next_batch_sees_the_states_the_batch_before_wrote() -> None:
    processor, sent, _, _ = make(settings=BATCHING)
    acks = Acks()
    await processor.on_batch([incoming(0, event("t0"), acks), incoming(1, event("t1"), acks)])
    await processor.on_batch([incoming(2, event("t2"), acks)])
    # A replay of the first batch (a restart before the commit) counts nothing again.
    processor.ledger.restart({TP0: 0})
    processor.ledger.start(TP0, 0)
    await processor.on_batch([incoming(0, event("t0"), acks), incoming(1, event("t1"), acks)])
    await settle(processor)
    visits = [(o["ticket_id"], o["visit"]) for o in offers_of(sent)]
    assert visits == [("t0", 1), ("t1", 2), ("t2", 3), ("t0", 1), ("t1", 2)]
    first, replayed = offers_of(sent)[:2], offers_of(sent)[3:]
    assert first == replayed                                  # the same offers, to the byte


async def test_a_poison_login_in_the_middle_of_a_batch_is_dead_lettered_in_its_place() -> None:
    processor, sent, ledger, metrics = make(settings=BATCHING)
    acks = Acks()
    await processor.on_batch([incoming(0, event("t0"), acks), incoming(1, b"garbage", acks),
                              incoming(2, event("t2"), acks)])
    await settle(processor)
    assert [(topic, key) for topic, key, _, _ in sent.records] == [
        ("offers", b"t0"), ("logins.dlq", b"ada"), ("offers", b"t2")]
    assert sent.records[1][3]["source.offset"] == b"1"
    assert [o["visit"] for o in offers_of(sent)] == [1, 2]
    assert acks.offsets == [0, 1, 2] and ledger.safe_offset(TP0) == 3
    assert logins(metrics, "dead_lettered") == 1 and logins(metrics, "positioned") == 2


async def test_a_crash_mid_batch_leaves_the_whole_batch_unfinished_and_uncommitted() -> None:
    users: dict[str, bytes] = {}
    processor, sent, ledger, _ = make(users, settings=BATCHING)
    sent.hold = asyncio.Event()
    acks = Acks()
    await processor.on_batch([incoming(o, event(f"t{o}"), acks) for o in range(3)])
    [task] = processor.in_flight
    await asyncio.wait_for(sent.entered.wait(), 10)
    task.cancel()                             # the worker stops while the broker is away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert acks.offsets == [] and sent.records == []
    assert ledger.in_flight() == 3 and ledger.safe_offset(TP0) == 0
    assert ledger.fence({}) == {TP0: 0}       # the commit stays before the batch
    assert await free_slots(processor) == BATCHING.worker_concurrency
    # The next worker consumes the batch again on the same state: nothing counts twice.
    again, sent_again, ledger_again, _ = make(users)
    ledger_again.restart({TP0: 0})
    await again.on_batch([incoming(o, event(f"t{o}"), acks) for o in range(3)])
    await settle(again)
    assert [o["visit"] for o in offers_of(sent_again)] == [1, 2, 3]
    assert orjson.loads(users["ada"])["visits"] == 3
    assert acks.offsets == [0, 1, 2] and ledger_again.safe_offset(TP0) == 3


async def test_a_batch_larger_than_the_free_slots_goes_out_in_parts() -> None:
    processor, sent, ledger, metrics = make(settings=BATCHING)
    acks = Acks()
    count = 3 * BATCHING.worker_concurrency + 1
    await processor.on_batch([incoming(o, event(f"t{o}"), acks) for o in range(count)])
    await settle(processor)
    assert sum(sent.batches) == count and max(sent.batches) <= processor.batch_max
    assert [o["visit"] for o in offers_of(sent)] == list(range(1, count + 1))
    assert acks.offsets == list(range(count)) and ledger.safe_offset(TP0) == count
    assert metrics.registry.get_sample_value("worker_batch_logins_sum") == count


async def test_batches_hand_their_records_over_in_order_whatever_finishes_first() -> None:
    processor, sent, _, _ = make()
    acks = Acks()
    order: list[bytes] = []
    release_first = asyncio.Event()
    calls = 0

    async def enqueue(records: Sequence[OutRecord]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:                        # the first batch is slow to hand its records over
            await release_first.wait()
        order.extend(r.key for r in records)
        return await Sent().enqueue(records)

    processor.outbox.enqueue = enqueue  # type: ignore[method-assign]
    await processor.on_batch([incoming(0, event("idem", at=1_000_000), acks)])
    await processor.on_batch([incoming(1, event("idem", at=4_000_000), acks)])  # a retry
    await asyncio.sleep(0)
    assert order == []                        # the second batch waits for the first
    release_first.set()
    await settle(processor)
    assert order == [b"idem", b"idem"] and acks.offsets == [0, 1]


async def test_the_breaker_trips_mid_batch_and_begins_nothing_after_it() -> None:
    processor, sent, ledger, _ = breaker_processor(2, BATCHING)
    acks = Acks()
    batch = asyncio.create_task(processor.on_batch(
        [incoming(0, event("t0"), acks), incoming(1, b"garbage", acks),
         incoming(2, b"garbage", acks), incoming(3, event("t3"), acks)]))
    done, _ = await asyncio.wait({batch}, timeout=0.2)
    assert not done and processor.breaker.tripped
    await settle(processor)
    assert sent.batches == [3]                # what was begun before the trip goes out
    assert [topic for topic, *_ in sent.records] == ["offers", "logins.dlq", "logins.dlq"]
    assert acks.offsets == [0, 1, 2] and ledger.safe_offset(TP0) == 3
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert ledger.safe_offset(TP0) == 3


async def test_a_gap_inside_a_batch_is_read_and_begun_in_its_place() -> None:
    async def read_gap(bootstrap_servers: str, topic: str, partition: int, start: int,
                       end: int) -> list[SourceRecord]:
        return [record(o, event(f"t{o}")) for o in range(start, end)]

    processor, sent, ledger, _ = make(read_gap=read_gap, settings=BATCHING)
    acks = Acks()
    await processor.on_batch([incoming(0, event("t0"), acks), incoming(3, event("t3"), acks),
                              incoming(4, event("t4"), acks)])
    await settle(processor)
    assert [(o["ticket_id"], o["visit"]) for o in offers_of(sent)] == [
        ("t0", 1), ("t1", 2), ("t2", 3), ("t3", 4), ("t4", 5)]
    assert acks.offsets == [0, 3, 4] and ledger.safe_offset(TP0) == 5


class FlakyProducer:
    """A producer whose deliveries of the records named in ``failing`` fail once each."""

    def __init__(self, failing: set[bytes], refused: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.failing = set(failing)
        self.refused = set(refused)
        self.delivered: list[bytes] = []

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: None,
                   timestamp: None, headers: Any) -> asyncio.Future[None]:
        if key in self.refused:               # refused at once (the buffer, the metadata)
            self.refused.discard(key)
            raise ConnectionError("no metadata")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key in self.failing:
            self.failing.discard(key)
            done.set_exception(ConnectionError("broker away"))
        else:
            self.delivered.append(key)
            done.set_result(None)
        return done


async def test_a_failed_delivery_in_a_batch_is_retried_until_acknowledged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import retry

    monkeypatch.setattr(retry, "BACKOFF", wait_none())
    producer = FlakyProducer(failing={b"t1"}, refused={b"t2"})
    metrics = WorkerMetrics()
    deliveries = Deliveries(SimpleNamespace(producer=producer), metrics)
    ledger = OffsetLedger("logins")
    processor = LoginProcessor({}, BATCHING, deliveries, ledger, metrics, read_gap=no_gap, signing=None)
    acks = Acks()
    await processor.on_batch([incoming(o, event(f"t{o}"), acks) for o in range(4)])
    await settle(processor)
    assert sorted(producer.delivered) == [b"t0", b"t1", b"t2", b"t3"]
    assert producer.delivered[:2] == [b"t0", b"t3"]           # the retries come after
    assert metrics.registry.get_sample_value("worker_send_failures_total") == 2
    assert acks.offsets == [0, 1, 2, 3] and ledger.safe_offset(TP0) == 4
    assert deliveries.oldest_pending_s() == 0.0


async def test_a_batch_whose_delivery_keeps_failing_is_never_finished(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import retry

    monkeypatch.setattr(retry, "BACKOFF", wait_none())

    class Away:
        async def send(self, *args: object) -> asyncio.Future[None]:
            raise ConnectionError("broker away")

    metrics = WorkerMetrics()
    deliveries = Deliveries(SimpleNamespace(producer=Away()), metrics)
    ledger = OffsetLedger("logins")
    processor = LoginProcessor({}, SETTINGS, deliveries, ledger, metrics, read_gap=no_gap, signing=None)
    acks = Acks()
    await processor.on_batch([incoming(o, event(f"t{o}"), acks) for o in range(2)])

    async def hundred_failures() -> bool:     # it keeps trying: a hundred attempts and counting
        return (metrics.registry.get_sample_value("worker_send_failures_total") or 0) >= 100

    await wait_until_async(hundred_failures, 10, "a hundred failed attempts", interval_s=0.01)
    assert acks.offsets == [] and ledger.safe_offset(TP0) == 0
    assert deliveries.oldest_pending_s() > 0.0
    [task] = processor.in_flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deliveries.oldest_pending_s() == 0.0 and ledger.safe_offset(TP0) == 0


class PartitionedUsers(dict[str, bytes]):
    """Faust's table as the worker sees it: one store per partition, reads and writes going
    to the partition of the current event (``make_current``), as Faust's RocksDB store does."""

    def __init__(self) -> None:
        super().__init__()
        self.current: int | None = None
        self.stores: dict[int, dict[str, bytes]] = {}

    def make_current(self, event: str) -> None:
        self.current = int(event.split("@")[0].removeprefix("event-"))

    def get(self, user_id: str, default: Any = None) -> Any:
        assert self.current is not None
        return self.stores.get(self.current, {}).get(user_id, default)

    def __setitem__(self, user_id: str, state: bytes) -> None:
        assert self.current is not None
        self.stores.setdefault(self.current, {})[user_id] = state


async def test_a_batch_over_several_partitions_reads_and_writes_each_users_own_partition(
        ) -> None:
    users = PartitionedUsers()
    processor, sent, ledger, _ = make(users, settings=BATCHING)
    processor.make_current = users.make_current
    acks = Acks()
    # ada's logins are on partition 0, bob's on 1; the batch interleaves them.
    batch = [incoming(0, event("a0", user="ada"), acks, "ada", 0),
             incoming(0, event("b0", user="bob"), acks, "bob", 1),
             incoming(1, event("a1", user="ada"), acks, "ada", 0),
             incoming(1, event("b1", user="bob"), acks, "bob", 1)]
    await processor.on_batch(batch)
    await processor.on_batch([incoming(2, event("a2", user="ada"), acks, "ada", 0),
                              incoming(2, event("b2", user="bob"), acks, "bob", 1)])
    await settle(processor)
    assert [(o["ticket_id"], o["visit"]) for o in offers_of(sent)] == [
        ("a0", 1), ("b0", 1), ("a1", 2), ("b1", 2), ("a2", 3), ("b2", 3)]
    assert set(users.stores[0]) == {"ada"} and set(users.stores[1]) == {"bob"}
    assert orjson.loads(users.stores[0]["ada"])["visits"] == 3
    assert ledger.safe_offset(TP("logins", 0)) == 3 and ledger.safe_offset(TP("logins", 1)) == 3


async def test_with_model_latency_several_batches_wait_for_their_model_calls_together() -> None:
    slow = BATCHING.replace(model_latency_ms=60_000.0)
    processor, sent, ledger, _ = make(settings=slow)
    acks = Acks()
    await processor.on_batch([incoming(0, event("t0"), acks), incoming(1, event("t1"), acks)])
    await processor.on_batch([incoming(2, event("t2"), acks)])
    # Both batches are begun and wait for their model calls at once: the agent went on.
    assert len(processor.in_flight) == 2 and ledger.in_flight() == 3
    assert sent.batches == [] and acks.offsets == []
    assert await free_slots(processor) == slow.worker_concurrency - 3
    for task in list(processor.in_flight):
        task.cancel()
    await asyncio.gather(*processor.in_flight, return_exceptions=True)
    assert ledger.safe_offset(TP0) == 0 and await free_slots(processor) == slow.worker_concurrency
