"""Test helpers: waiting on conditions with deadlines, component processes, offer readers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from runtime.settings import Settings
from schemas.codec import offer_codec


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.05) -> None:
    """Poll a condition until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_until_async(condition: Callable[[], Awaitable[bool]], timeout: float, what: str,
                           interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


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

    def wait_for_log(self, marker: str, timeout: float, occurrences: int = 1) -> None:
        def seen() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited; log:\n{self.log_text()[-3000:]}")
            return self.log_text().count(marker) >= occurrences
        wait_until(seen, timeout, f"{marker!r} in the {self.name} log")

    def wait_http_ok(self, url: str, timeout: float) -> None:
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


def start_worker(settings: Settings, log_dir: Path, name: str = "worker") -> Component:
    worker = Component(name, ["worker"], settings, log_dir).start()
    worker.wait_for_log("Worker]: Ready", timeout=90)
    return worker


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
