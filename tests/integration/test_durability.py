"""The durability repros, each against a real broker: phantom 503s, a worker that must
never give up, expiry across restarts, and a restart around the session timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.broker.local import LocalBroker
from devstack.ports import free_port, free_port_pair
from loadtest.produce import produce
from runtime.settings import Settings
from runtime.topics import ensure_topics
from schemas.tickets import _b64e
from tests.conftest import register_cluster, unique_settings
from tests.helpers import (
    Component,
    OfferReader,
    committed_offsets,
    start_worker,
    ticket_signer,
    wait_until,
    wait_until_async,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker of this module's own: the tests pause it with SIGSTOP."""
    home = tmp_path_factory.mktemp("paused-broker")
    broker = LocalBroker(Settings(home=home, kafka_listen=f"127.0.0.1:{free_port_pair()}"))
    broker.start()
    register_cluster(broker.address, broker.settings)
    try:
        yield broker
    finally:
        broker.stop()


class Paused:
    """SIGSTOP the broker for the block, as a long GC pause or a frozen VM would."""

    def __init__(self, broker: LocalBroker) -> None:
        pid = broker.status().pid
        assert pid is not None
        self.pid = pid

    def __enter__(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc: object) -> None:
        os.kill(self.pid, signal.SIGCONT)


def start_origin(settings: Settings, logs: Path) -> tuple[Component, str]:
    origin = Component("origin", ["origin"], settings, logs).start()
    url = f"http://127.0.0.1:{settings.origin_port}"
    origin.wait_http_ok(f"{url}/readyz", timeout=30)
    return origin, url


def login_until_accepted(url: str, user_id: str, key: str | None) -> dict[str, object]:
    headers = {"Idempotency-Key": key} if key else {}
    accepted_with: list[dict[str, object]] = []

    def accepted() -> bool:
        response = httpx.post(f"{url}/login", json={"user_id": user_id, "ip": "8.8.8.8"},
                              headers=headers, timeout=10)
        if response.status_code == 202:
            accepted_with.append(response.json())
            return True
        return False

    wait_until(accepted, 60, f"a 202 for {user_id}", interval=0.2)
    return accepted_with[-1]


async def offers_of(settings: Settings, user_id: str) -> dict[str, dict[str, object]]:
    """Every offer of one user on the topic, by ticket id."""
    async with OfferReader(settings) as reader:
        for _ in range(10):
            await reader.poll()
    return {t: o for t, o in reader.offers.items() if o is not None and o["user_id"] == user_id}


async def test_a_503_login_retried_with_its_key_counts_once(own_broker: LocalBroker,
                                                            tmp_path: Path) -> None:
    settings = unique_settings(own_broker.address, tmp_path, origin_port=free_port(),
                               login_timeout_s=2.0)
    await ensure_topics(settings)
    worker = start_worker(settings, tmp_path / "logs")
    origin, url = start_origin(settings, tmp_path / "logs")
    signer = ticket_signer(settings, settings.ticket_ttl_s)
    try:
        first = login_until_accepted(url, "p1", "first-login")
        with Paused(own_broker):
            response = httpx.post(f"{url}/login", json={"user_id": "p1", "ip": "8.8.8.8"},
                                  headers={"Idempotency-Key": "second-login"}, timeout=10)
            assert response.status_code == 503
            assert "same Idempotency-Key" in response.json()["error"]
            keyless = httpx.post(f"{url}/login", json={"user_id": "p2", "ip": "8.8.8.8"},
                                 timeout=10)
            assert keyless.status_code == 503
            assert keyless.json()["may_be_processed"] is True
            assert "may still be processed" in keyless.json()["error"]
        retried = login_until_accepted(url, "p1", "second-login")
        # The retry's ticket id is the one derived from the key: the same as the 503's.
        assert retried["ticket_id"] == _b64e(signer.ticket_id_for("p1", "second-login"))
        async with OfferReader(settings) as reader:
            offers = await reader.wait_for([str(first["ticket_id"]), str(retried["ticket_id"])],
                                           timeout=60)
        assert offers[str(retried["ticket_id"])]["visit"] == 2
        # Both events of the second login (the 503's, written once the broker
        # resumed, and the retry's) made one offer, counted once.
        assert {t: o["visit"] for t, o in (await offers_of(settings, "p1")).items()} == {
            first["ticket_id"]: 1, retried["ticket_id"]: 2}
        # A retry with a reused key gets the same ticket id and counts nothing.
        again = login_until_accepted(url, "p1", "second-login")
        assert again["ticket_id"] == retried["ticket_id"]
        third = login_until_accepted(url, "p1", "third-login")
        async with OfferReader(settings) as reader:
            offer = (await reader.wait_for([str(third["ticket_id"])]))[str(third["ticket_id"])]
        assert offer["visit"] == 3
    finally:
        origin.stop()
        worker.stop()


async def test_the_worker_never_gives_up_and_says_it_is_stuck(own_broker: LocalBroker,
                                                              tmp_path: Path) -> None:
    web_port = free_port()
    settings = unique_settings(own_broker.address, tmp_path, origin_port=free_port(),
                               model_latency_ms=2000.0, worker_web_port=web_port,
                               worker_stuck_after_s=1.0)
    await ensure_topics(settings)
    worker = start_worker(settings, tmp_path / "logs")
    origin, url = start_origin(settings, tmp_path / "logs")
    status = f"http://127.0.0.1:{web_port}/status/"
    try:
        wait_until(lambda: httpx.get(status, timeout=2).status_code == 200, 30,
                   "the worker's status page to say ready")
        accepted = login_until_accepted(url, "s1", "stuck-login")
        # The login is in the worker's hands (its 2 s model call) before the pause.
        wait_until(lambda: httpx.get(status, timeout=2).json()["in_flight"] >= 1, 30,
                   "the worker to take the login")
        with Paused(own_broker):
            # The offer is sent while the broker is paused; its ack cannot come.
            def stuck() -> bool:
                body = httpx.get(status, timeout=2).json()
                return (bool(body["stuck"]) and not body["ready"]
                        and body["oldest_unacked_send_s"] >= 1.0)
            wait_until(stuck, 30, "the worker to report itself stuck")
            assert httpx.get(status, timeout=2).status_code == 503
            metrics = httpx.get(f"http://127.0.0.1:{web_port}/metrics/", timeout=2).text
            age = [line for line in metrics.splitlines()
                   if line.startswith("worker_oldest_unacked_send_seconds ")]
            assert age and float(age[0].split()[1]) >= 1.0
        async with OfferReader(settings) as reader:
            offers = await reader.wait_for([str(accepted["ticket_id"])], timeout=90)
        assert offers[str(accepted["ticket_id"])]["visit"] == 1
        wait_until(lambda: httpx.get(status, timeout=2).status_code == 200, 30,
                   "the worker to be ready again")
    finally:
        origin.stop()
        worker.stop()


async def test_every_offer_gets_its_tombstone_across_a_restart(kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    # 40 logins of one user, more than the worker remembers per user, then a
    # SIGKILL before they expire: the restarted worker tombstones all 40.
    settings = unique_settings(kafka_bootstrap, tmp_path, ticket_ttl_s=10, expiry_sweep_s=1.0)
    await ensure_topics(settings)
    worker = start_worker(settings, tmp_path / "logs")
    try:
        summary = await produce(settings, count=40, rate=0, users=1, progress=False,
                                keep_tickets=True)
        signer = ticket_signer(settings, settings.ticket_ttl_s)
        ticket_ids = [signer.verify(t).ticket_id for t in summary.tickets]
        async with OfferReader(settings) as reader:
            await reader.wait_for(ticket_ids, timeout=60)
            assert all(reader.offers[t] is not None for t in ticket_ids)
            worker.kill()
            worker = start_worker(settings, tmp_path / "logs", name="worker-restarted")

            async def all_tombstoned() -> bool:
                await reader.poll()
                return all(reader.offers.get(t, 0) is None for t in ticket_ids)
            await wait_until_async(all_tombstoned, 60, "tombstones for all 40 tickets")
    finally:
        worker.stop()


async def test_a_restart_around_the_session_timeout_loses_nothing(kafka_bootstrap: str,
                                                                  tmp_path: Path) -> None:
    """The timing in docs/decisions/0001-own-the-commit.md: a worker behind on a backlog
    is SIGKILLed while logins flow, and its replacement joins as the dead member's
    session expires, so it starts while a second rebalance is coming."""
    settings = unique_settings(kafka_bootstrap, tmp_path, model_latency_ms=300.0,
                               partitions=6, worker_concurrency=32,
                               worker_session_timeout_s=10.0)
    await ensure_topics(settings)
    worker = start_worker(settings, tmp_path / "logs")
    count = 1500
    try:
        sending = asyncio.create_task(produce(settings, count=count, rate=150, users=150,
                                              progress=False, keep_tickets=True))

        async def mid_backlog() -> bool:
            done = await committed_offsets(settings, settings.worker_id)
            return sum(done.values()) >= 200

        await wait_until_async(mid_backlog, 60, "the worker to commit 200 logins")
        worker.kill()
        killed_at = time.monotonic()
        # The fault's schedule, not a synchronisation: the replacement joins half a
        # second before the dead member's session expires.
        joins_at = killed_at + settings.worker_session_timeout_s - 0.5
        await asyncio.sleep(max(0.0, joins_at - time.monotonic()))
        worker = Component("worker-restarted", ["worker"], settings, tmp_path / "logs").start()
        summary = await sending
        assert summary.failed == 0
        signer = ticket_signer(settings, settings.ticket_ttl_s)
        ticket_ids = [signer.verify(t).ticket_id for t in summary.tickets]
        async with OfferReader(settings) as reader:
            try:
                offers = await reader.wait_for(ticket_ids, timeout=180)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nrestarted worker's log:\n"
                                     f"{worker.log_text()[-4000:]}") from None
    finally:
        worker.stop()
    visits: dict[str, list[int]] = defaultdict(list)
    for offer in offers.values():
        visits[offer["user_id"]].append(offer["visit"])
    for user, seen in visits.items():
        assert sorted(seen) == list(range(1, len(seen) + 1)), user
