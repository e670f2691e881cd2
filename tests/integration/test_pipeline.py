"""The pipeline end to end on a real broker: origin process, worker process, offers topic."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.ports import free_port
from pipeline.readiness import ready_url
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import ensure_topics
from schemas.codec import AvroCodec, load_schema, login_codec
from tests.conftest import unique_settings
from tests.helpers import (
    Component,
    OfferReader,
    start_worker,
    ticket_signer,
    wait_until,
    wait_until_async,
)

pytestmark = pytest.mark.integration


class Stack:
    def __init__(self, settings: Settings, origin_url: str, worker_ready_url: str) -> None:
        self.settings = settings
        self.origin_url = origin_url
        self.worker_ready_url = worker_ready_url
        self.http = httpx.Client(base_url=origin_url, timeout=10)

    def login(self, user_id: str, ip: str) -> dict[str, Any]:
        response = self.http.post("/login", json={"user_id": user_id, "ip": ip})
        assert response.status_code == 202, response.text
        return response.json()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("pipeline")
    port = free_port()
    settings = unique_settings(kafka_bootstrap, home, origin_port=port)
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings, home / "logs")
    origin = Component("origin", ["origin"], settings, home / "logs").start()
    try:
        origin.wait_http_ok(f"http://127.0.0.1:{port}/readyz", timeout=30)
        assert worker.ready_url is not None
        yield Stack(settings, f"http://127.0.0.1:{port}", worker.ready_url)
    finally:
        origin.stop()
        worker.stop()


async def test_login_positions_an_offer_in_the_ips_currency(stack: Stack) -> None:
    gb = stack.login("gb-user", "81.2.69.160")
    jp = stack.login("jp-user", "133.11.0.1")
    async with OfferReader(stack.settings) as reader:
        offers = await reader.wait_for([gb["ticket_id"], jp["ticket_id"]])
    assert (offers[gb["ticket_id"]]["country"], offers[gb["ticket_id"]]["currency"]) == ("GB", "GBP")
    assert (offers[jp["ticket_id"]]["country"], offers[jp["ticket_id"]]["currency"]) == ("JP", "JPY")
    assert offers[gb["ticket_id"]]["user_id"] == "gb-user"
    assert offers[gb["ticket_id"]]["login_accepted_at"] == gb["login_accepted_at"]


def test_the_worker_says_over_http_that_it_is_ready_and_which_partitions_it_holds(
        stack: Stack) -> None:
    response = httpx.get(stack.worker_ready_url, timeout=5)
    assert response.status_code == 200
    # The only worker of its group holds every partition of logins.
    assert response.json() == {"ready": True,
                               "partitions": list(range(stack.settings.partitions))}


async def test_second_login_sees_the_state_of_the_first(stack: Stack) -> None:
    first = stack.login("returning-user", "81.2.69.160")
    second = stack.login("returning-user", "81.2.69.160")
    async with OfferReader(stack.settings) as reader:
        offers = await reader.wait_for([first["ticket_id"], second["ticket_id"]])
    one, two = offers[first["ticket_id"]], offers[second["ticket_id"]]
    assert (one["visit"], one["discount"]["code"]) == (1, "WELCOME15")
    assert (two["visit"], two["discount"]["code"]) == (2, "NONE")
    # The first offer's categories became the user's recent categories.
    assert two["items"][0]["category"] == one["items"][0]["category"]


async def _dead_letters(settings: Settings, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(settings.dlq_topic, bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    try:
        async def enough() -> bool:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
            return len(found) >= count
        await wait_until_async(enough, 60, f"{count} dead letters")
    finally:
        await consumer.stop()
    return found


async def test_poison_messages_are_dead_lettered_and_the_stream_goes_on(stack: Stack) -> None:
    settings = stack.settings
    signer = ticket_signer(settings, 900)
    unknown = load_schema("login_event")
    unknown["fields"] = unknown["fields"] + [{"name": "extra", "type": "int"}]
    t = signer.issue()
    good_fields = {"ticket_id": t.ticket_id, "user_id": "poison-user", "ip": "81.2.69.160",
                   "user_agent": None, "login_accepted_at": 10, "expires_at": 5}
    poison = [
        b"\x00\xffnot avro at all",
        AvroCodec(unknown).encode({**good_fields, "extra": 1}),
        login_codec().encode(good_fields),  # expires before it was accepted: refused
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), acks="all")
    await producer.start()
    try:
        for value in poison:
            await producer.send_and_wait(settings.logins_topic, value, key=b"poison-user")
    finally:
        await producer.stop()
    after = stack.login("poison-user", "81.2.69.160")

    letters = await _dead_letters(settings, 3)
    headers = [dict(r.headers) for r in letters]
    assert sorted(h["error.type"].decode() for h in headers) == \
        ["LoginRejected", "MalformedMessage", "UnknownSchema"]
    assert {r.value for r in letters} == set(poison)  # kept intact for replay
    assert all(h["source.topic"].decode() == settings.logins_topic for h in headers)
    async with OfferReader(settings) as reader:
        offers = await reader.wait_for([after["ticket_id"]])
    assert offers[after["ticket_id"]]["visit"] == 1


async def test_sync_baseline_computes_the_same_offer_as_the_pipeline(stack: Stack) -> None:
    body = {"user_id": "sync-compare", "ip": "133.11.0.1"}
    sync = stack.http.post("/offers/sync", json=body)
    assert sync.status_code == 200
    assert sync.headers["cache-control"] == "private, no-store"
    accepted = stack.login(**body)
    async with OfferReader(stack.settings) as reader:
        positioned = (await reader.wait_for([accepted["ticket_id"]]))[accepted["ticket_id"]]
    volatile = {"ticket_id", "created_at", "login_accepted_at", "expires_at"}
    assert {k: v for k, v in sync.json().items() if k not in volatile} == \
        {k: v for k, v in positioned.items() if k not in volatile}


@pytest.mark.parametrize("content,status,field", [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (b"{}", 422, "user_id"),
    (b'{"user_id": ""}', 422, "user_id"),
    (b'{"user_id": "x", "ip": "300.1.1.1"}', 422, "ip"),
    (b'{"user_id": "x", "admin": true}', 422, "admin"),
    (b'{"user_id": "' + b"a" * 5000 + b'"}', 413, None),
])
def test_bad_bodies_get_a_clear_4xx(stack: Stack, content: bytes, status: int,
                                    field: str | None) -> None:
    for path in ("/login", "/offers/sync"):
        response = stack.http.post(path, content=content,
                                   headers={"content-type": "application/json"})
        assert response.status_code == status, (path, response.text)
        body = response.json()
        assert body["error"]
        assert body.get("field") == field
        assert "ticket" not in body


def test_openapi_describes_the_login(stack: Stack) -> None:
    doc = stack.http.get("/openapi.json").json()
    assert set(doc["paths"]["/login"]["post"]["responses"]) >= {"202", "413", "422", "503"}


def test_broker_down_gets_503_and_no_ticket(kafka_bootstrap: str, tmp_path: Path) -> None:
    port = free_port()
    settings = unique_settings(f"127.0.0.1:{free_port()}", tmp_path, origin_port=port,
                               login_timeout_s=1.0)
    origin = Component("origin-no-kafka", ["origin"], settings, tmp_path).start()
    try:
        origin.wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30)
        response = httpx.post(f"http://127.0.0.1:{port}/login", json={"user_id": "u1"}, timeout=10)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "ticket" not in response.json()
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
    finally:
        origin.stop()


async def test_expired_tickets_get_tombstones(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path, ticket_ttl_s=2, expiry_sweep_s=0.5)
    await ensure_topics(settings)
    from loadtest.produce import produce

    worker = start_worker(settings, tmp_path / "logs")
    try:
        summary = await produce(settings, count=5, rate=0, users=5, progress=False,
                                keep_tickets=True)
        signer = ticket_signer(settings, 2)
        ticket_ids = [signer.verify(t).ticket_id for t in summary.tickets]
        async with OfferReader(settings) as reader:
            await reader.wait_for(ticket_ids)

            async def all_tombstoned() -> bool:
                await reader.poll()
                return all(t in reader.offers and reader.offers[t] is None for t in ticket_ids)
            await wait_until_async(all_tombstoned, 30, "tombstones for the expired tickets")
    finally:
        worker.stop()


def test_faust_command_line_runs_the_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`faust -A pipeline.app worker -l info` is the same worker, built from the environment."""
    import os
    import subprocess
    import sys

    settings = unique_settings(kafka_bootstrap, tmp_path, worker_web_port=free_port())
    asyncio.run(ensure_topics(settings))
    log_path = tmp_path / "faust.log"
    faust = Path(sys.executable).with_name("faust")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(faust), "-A", "pipeline.app", "worker", "-l", "info"],
                                env={**os.environ, **settings.to_env()}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                response = httpx.get(ready_url(settings.worker_web_port), timeout=1)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json()["ready"] is True
        wait_until(ready, 90, "the faust command's worker to be ready")
        stack_origin = Component("origin", ["origin"], settings.replace(origin_port=free_port()),
                                 tmp_path).start()
        try:
            url = f"http://127.0.0.1:{stack_origin.env['POSITIONING_ORIGIN_PORT']}"
            stack_origin.wait_http_ok(f"{url}/readyz", timeout=30)
            accepted = httpx.post(f"{url}/login", json={"user_id": "via-faust", "ip": "8.8.8.8"},
                                  timeout=10).json()

            async def read() -> dict[str, Any]:
                async with OfferReader(settings) as reader:
                    return await reader.wait_for([accepted["ticket_id"]])
            offer = asyncio.run(read())[accepted["ticket_id"]]
            assert offer["currency"] == "USD"
        finally:
            stack_origin.stop()
    finally:
        import signal
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
