"""The worker's ordered half of a login, with a plain dict standing in for the Faust table."""

from __future__ import annotations

import orjson
import pytest

from engine.state import Position
from pipeline.worker import LoginProcessor, PoisonMessage
from schemas.codec import login_codec

CODEC = login_codec()


def event(ticket: str, at: int = 1_000_000, user: str = "ada") -> bytes:
    return CODEC.encode({"ticket_id": ticket, "user_id": user, "ip": "81.2.69.160",
                         "user_agent": None, "login_accepted_at": at,
                         "expires_at": at + 900_000_000})


def test_each_login_is_counted_once_and_a_replay_gets_the_same_offer() -> None:
    users: dict[str, bytes] = {}
    processor = LoginProcessor(users)
    first = processor.begin(event("t1"), Position(0, 0))
    second = processor.begin(event("t2"), Position(0, 1))
    replay = processor.begin(event("t1"), Position(0, 0))
    assert (first.offer["visit"], second.offer["visit"]) == (1, 2)
    assert replay.offer == first.offer and not replay.counted  # created_at included
    assert first.offer["created_at"] > 0
    assert orjson.loads(users["ada"])["visits"] == 2


def test_a_retry_with_the_same_ticket_id_counts_once_and_keeps_the_later_expiry() -> None:
    users: dict[str, bytes] = {}
    processor = LoginProcessor(users)
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
        LoginProcessor({}).begin(value, Position(0, 0))
    assert caught.value.stage == stage


async def test_deliveries_retry_past_any_attempt_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old worker gave up after 10,000 attempts and acked the login with no offer."""
    import asyncio

    from pipeline import worker

    monkeypatch.setattr(worker, "RETRY_BACKOFF_S", (0.0,))
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

    class App:
        producer = Producer()

    deliveries = worker.Deliveries(App(), worker.WorkerMetrics())  # type: ignore[arg-type]
    await deliveries.send("offers", b"t1", b"offer")
    assert Producer.calls == failures + 1
    assert deliveries.oldest_pending_s() == 0.0
    registry = deliveries.metrics.registry
    assert registry.get_sample_value("worker_send_failures_total") == failures
