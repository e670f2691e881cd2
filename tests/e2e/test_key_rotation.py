"""Both kinds of key rotate under a steady login load through `positioning up`: every login
is answered, every offer is found at an edge, and no component restarts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from devstack.ports import free_edge_port, free_port
from runtime.offer_keys import read_verify_keys, verify_keys_file
from runtime.settings import Settings
from tests.conftest import unique_settings

pytestmark = pytest.mark.e2e

PUBLISH_S = 8.0   # longer than an edge takes to re-read its key files (5 s)
TTL_S = 10        # short tickets, so the old keys retire within the test


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args],
                          env={**os.environ, **settings.to_env()}, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture(scope="module")
def home_keys_stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("rotation")
    settings = unique_settings(kafka_bootstrap, home, origin_port=free_port(),
                               model_latency_ms=0.0, ticket_ttl_s=TTL_S,
                               edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    settings = settings.replace(ticket_secret=None)  # the home's own file, which rotates
    up = _cli(settings, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield settings
    finally:
        _cli(settings, "down")


async def _steady_load(settings: Settings, seconds: float, rate: float) -> list[dict]:
    """Logins at ``rate`` a second for ``seconds``; each one's offer looked up at an edge."""
    edges = [f"http://127.0.0.1:{port}" for port in settings.edge_ports.values()]
    origin = f"http://127.0.0.1:{settings.origin_port}"
    results: list[dict] = []

    async def one(http: httpx.AsyncClient, i: int) -> None:
        login = await http.post(f"{origin}/login", json={"user_id": f"rot-{i % 40}"})
        out = {"login": login.status_code, "kid": None, "lookup": None}
        if login.status_code == 202:
            ticket = login.json()["ticket"]
            out["kid"] = ticket.split(".")[0]
            found = await http.get(f"{edges[i % len(edges)]}/offers/{ticket}",
                                   params={"wait": 15})
            out["lookup"] = found.status_code
        results.append(out)

    async with httpx.AsyncClient(timeout=30) as http:
        tasks = []
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < seconds:
            tasks.append(asyncio.create_task(one(http, i)))
            i += 1
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    return results


def _pids(settings: Settings) -> set[str]:
    return {p.read_text() for p in (settings.home / "run").glob("*.pid")}


def test_both_keys_rotate_under_load_with_no_failed_lookup(home_keys_stack: Settings) -> None:
    settings = home_keys_stack
    old_ticket_kid = (settings.home / "ticket-secret").read_text().split(":")[0]
    (old_offer_key,) = read_verify_keys(verify_keys_file(settings))
    pids = _pids(settings)

    async def scenario() -> list[dict]:
        load = asyncio.create_task(_steady_load(settings, PUBLISH_S + TTL_S + 12, rate=8))
        await asyncio.sleep(2)
        rotated = await asyncio.to_thread(_cli, settings, "keys", "rotate", "--publish",
                                          str(PUBLISH_S))
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        return await load

    results = asyncio.run(scenario())
    failed = [r for r in results if r["login"] != 202 or r["lookup"] != 200]
    assert len(results) > 150 and failed == []
    kids = {r["kid"] for r in results}
    assert old_ticket_kid in kids and len(kids) == 2, kids  # both keys signed tickets
    offer_keys = {k.kid: k for k in read_verify_keys(verify_keys_file(settings))}
    new_offer_kid = next(kid for kid in offer_keys if kid != old_offer_key.kid)
    worker_log = (settings.home / "logs" / "worker.log").read_text()
    assert f"signing offers with key {new_offer_kid}" in worker_log
    assert _pids(settings) == pids  # nothing restarted
    for port in settings.edge_ports.values():
        metrics = httpx.get(settings.edge_metrics_url(port), timeout=5).text
        refused = [line for line in metrics.splitlines()
                   if line.startswith("edge_records_refused_total{") and not line.endswith(" 0.0")]
        assert refused == [], refused
    # The old offer key is retired in the verify file; the next rotation drops it.
    assert offer_keys[old_offer_key.kid].retire_at_us is not None
    tickets = json.loads((settings.home / "ticket-secret").read_text())["keys"]
    assert [k["kid"] for k in tickets if k["retire_at_us"] is None] == [
        k for k in kids if k != old_ticket_kid]
