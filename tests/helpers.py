"""Test helpers: waiting on conditions with deadlines, component processes, offer readers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from devstack.ports import free_port
from loadtest.produce import ProduceSummary, produce
from pipeline.readiness import ready_url
from runtime import waiting
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings, env_var
from schemas.codec import offer_codec
from schemas.tickets import TicketSigner

T = TypeVar("T")


def wait_until(condition: Callable[[], T | None], timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Poll ``condition`` until it is truthy (runtime/waiting.py) and return its value; a test
    failure after ``timeout`` s."""
    try:
        return waiting.wait_until(condition, timeout, what, interval)
    except waiting.TimedOut as exc:
        raise AssertionError(str(exc)) from None


async def wait_until_async(condition: Callable[[], Awaitable[bool]], timeout: float, what: str,
                           interval: float = 0.05) -> None:
    """``wait_until`` for the event loop, with a coroutine function as the condition."""
    try:
        await waiting.wait_until_async(condition, timeout, what, interval)
    except waiting.TimedOut as exc:
        raise AssertionError(str(exc)) from None


class Component:
    """One `positioning <command>` process with its own log file."""

    def __init__(self, name: str, args: list[str], settings: Settings, log_dir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.env = {**os.environ, **settings.to_env(), **(extra_env or {})}
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_url: str | None = None

    def start(self) -> Component:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        log.close()
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_http_ok(self, url: str, timeout: float) -> None:
        """Wait until ``url`` answers 200; fail at once, with its log, if the process exits."""
        def ok() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited; log:\n{self.log_text()[-3000:]}")
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ok, timeout, f"{url} to answer 200")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def ticket_signer(settings: Settings, ttl_s: int) -> TicketSigner:
    """The signer of the test settings' tickets (the settings must have a ticket secret)."""
    assert settings.ticket_secret is not None, "these settings have no ticket secret"
    return TicketSigner.from_spec(settings.ticket_secret.get_secret_value(), ttl_s)


def start_worker(settings: Settings, log_dir: Path, name: str = "worker",
                 timeout: float = 90, wait_ready: bool = True) -> Component:
    """Start a worker process and (``wait_ready``) wait until its readiness page says ready.

    The worker's web port is ``settings.worker_web_port``, or a free port
    chosen here when that is 0 (pipeline/readiness.py); ``Component.ready_url``
    holds its readiness page. A test whose worker may never be ready (its
    breaker trips on what is already on the topic) waits on its own condition.
    """
    port = settings.worker_web_port or free_port()
    worker = Component(name, ["worker"], settings, log_dir,
                       extra_env={env_var("worker_web_port"): str(port)}).start()
    worker.ready_url = ready_url(port)
    if wait_ready:
        worker.wait_http_ok(worker.ready_url, timeout)
    return worker


async def committed_offsets(settings: Settings, group: str) -> dict[Any, int]:
    """The consumer group's committed offset per partition, asked as the admin role."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        return {tp: o.offset for tp, o in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


class OfferReader:
    """Reads the offers topic from the beginning: latest value per ticket id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.offers: dict[str, dict[str, Any] | None] = {}
        self.records = 0
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> OfferReader:
        self._consumer = AIOKafkaConsumer(
            self.settings.offers_topic, bootstrap_servers=self.settings.bootstrap_servers,
        **client_options(self.settings, Role.ADMIN),
            auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def poll(self) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=200)
        for records in batches.values():
            for r in records:
                self.records += 1
                ticket_id = r.key.decode()
                self.offers[ticket_id] = None if r.value is None else offer_codec().decode(r.value)

    async def wait_for(self, ticket_ids: list[str], timeout: float = 60) -> dict[str, Any]:
        async def all_there() -> bool:
            await self.poll()
            return all(self.offers.get(t) is not None for t in ticket_ids)
        try:
            await wait_until_async(all_there, timeout, f"offers for {len(ticket_ids)} tickets")
        except AssertionError as exc:
            missing = sum(self.offers.get(t) is None for t in ticket_ids)
            raise AssertionError(f"{exc}: {missing} still missing") from None
        return {t: self.offers[t] for t in ticket_ids}


async def kill_mid_stream(settings: Settings, reader: OfferReader, kill: Callable[[], None],
                          rate: float, kill_after_offers: int, count: int = 1500,
                          users: int = 150) -> ProduceSummary:
    """Produce ``count`` logins of ``users`` users at ``rate``/s, call ``kill`` once
    ``kill_after_offers`` offers have arrived, and return the producer's summary when
    every login is acked; fails the test if a login failed or the kill came after the
    last offer (then nothing was in flight to lose)."""
    sending = asyncio.create_task(produce(settings, count=count, rate=rate, users=users,
                                          progress=False, keep_tickets=True))

    async def some_offers_arrived() -> bool:
        await reader.poll()
        return len(reader.offers) >= kill_after_offers

    await wait_until_async(some_offers_arrived, 60, "the first offers")
    kill()
    killed_with = len(reader.offers)
    summary = await sending
    assert summary.failed == 0
    assert killed_with < count, "the kill came too late to test anything"
    return summary
