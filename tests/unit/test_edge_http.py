"""The edge's HTTP layer in process: tickets checked before storage, bounded waiters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from starlette.testclient import TestClient

from edge.app import create_app
from edge.materializer import Materializer
from edge.render import Renderer
from edge.store import OfferStore, StoredOffer
from runtime.kafka_security import KafkaAccess, Role
from runtime.settings import Settings
from schemas.tickets import TicketSigner

PLAINTEXT_EDGE = KafkaAccess(Role.EDGE, secured=False)  # no broker is reached here


SECRET = "test:" + "k" * 32


class SpyStore:
    """Counts lookups; the HTTP layer must not look up rejected tickets."""

    def __init__(self) -> None:
        self.gets = 0

    def get(self, ticket_id: bytes) -> StoredOffer | None:
        self.gets += 1
        return None


def make_app(tmp_path: Path, **changes: object):  # noqa: ANN201
    settings = Settings(home=tmp_path, ticket_secret=SECRET, **changes)  # type: ignore[arg-type]
    app = create_app(settings, "test", tmp_path / "edge")
    spy = SpyStore()
    app.state.node.use_store(spy, Renderer(None))
    return app, spy


def test_rejected_tickets_never_touch_the_store(tmp_path: Path) -> None:
    app, spy = make_app(tmp_path)
    client = TestClient(app)  # no lifespan: no Kafka, no RocksDB
    forged = TicketSigner.from_spec("test:" + "x" * 32, 900).issue().token
    expired = TicketSigner.from_spec(SECRET, 1).issue(now_ms=0).token
    assert client.get("/offers/garbage").status_code == 400
    assert client.get(f"/offers/{forged}").status_code == 401
    assert client.get(f"/offers/{expired}").status_code == 410
    assert client.get(f"/offers/{forged}/events").status_code == 401
    assert spy.gets == 0
    valid = TicketSigner.from_spec(SECRET, 900).issue().token
    response = client.get(f"/offers/{valid}")
    assert response.status_code == 404 and response.json()["status"] == "pending"
    assert response.headers["cache-control"] == "private, no-store"
    assert spy.gets == 1


@pytest.mark.parametrize("wait", ["-1", "nan", "inf", "soon"])
def test_bad_wait_values_are_400(tmp_path: Path, wait: str) -> None:
    app, _ = make_app(tmp_path)
    valid = TicketSigner.from_spec(SECRET, 900).issue().token
    assert TestClient(app).get(f"/offers/{valid}", params={"wait": wait}).status_code == 400


async def test_over_the_waiter_cap_is_503(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, edge_max_waiters=1)
    signer = TicketSigner.from_spec(SECRET, 900)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as http:
        first = asyncio.create_task(http.get(f"/offers/{signer.issue().token}", params={"wait": 2}))
        node = app.state.node
        deadline = asyncio.get_running_loop().time() + 5
        while node.waiters.count < 1:
            assert asyncio.get_running_loop().time() < deadline, "first request never waited"
            await asyncio.sleep(0.01)
        second = await http.get(f"/offers/{signer.issue().token}", params={"wait": 2})
        assert second.status_code == 503
        assert second.headers["retry-after"] == "1"
        assert (await first).status_code == 404  # timed out, still pending
    assert node.waiters.count == 0


def test_cors_header_for_the_origins_page(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, cors_origins=("http://127.0.0.1:8000",))
    valid = TicketSigner.from_spec(SECRET, 900).issue().token
    client = TestClient(app)
    allowed = client.get(f"/offers/{valid}", headers={"origin": "http://127.0.0.1:8000"})
    assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:8000"
    other = client.get(f"/offers/{valid}", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def _tombstone(offset: int) -> ConsumerRecord:
    return ConsumerRecord(topic="offers", partition=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=b"%022d" % offset, value=None, checksum=None,
                          serialized_key_size=22, serialized_value_size=-1, headers=[])


def test_readyz_reports_the_catch_up_once_caught_up(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    client = TestClient(app)
    before_start = client.get("/readyz")
    assert before_start.status_code == 503
    assert before_start.json()["caught_up_after_s"] is None
    node = app.state.node
    store = OfferStore(tmp_path / "store")
    try:
        m = Materializer("unused:9092", "offers", store, node.waiters, node.metrics,
                         access=PLAINTEXT_EDGE, keyring=None, renderer=Renderer(None))
        m.progress.targets = {0: 3}
        node.materializer = m
        m.apply({TopicPartition("offers", 0): [_tombstone(0), _tombstone(1)]})
        catching_up = client.get("/readyz")
        assert catching_up.status_code == 503
        assert catching_up.json()["lag"] == {"0": 1}
        assert catching_up.json()["caught_up_after_s"] is None
        assert catching_up.json()["applied_during_catch_up"] is None
        m.apply({TopicPartition("offers", 0): [_tombstone(2)]})
        m.apply({TopicPartition("offers", 0): [_tombstone(3)]})  # live: not part of catching up
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["ready"] is True and body["lag"] == {"0": 0}
        assert body["applied_during_catch_up"] == 3
        assert body["applied_since_start"] == 4
        assert isinstance(body["caught_up_after_s"], float) and body["caught_up_after_s"] >= 0
    finally:
        store.close()


def test_every_answer_carries_the_security_headers_a_review_checks(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    client = TestClient(app)  # no lifespan: no Kafka needed for these
    for path in ("/healthz", "/offers/not-a-ticket", "/nowhere"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
