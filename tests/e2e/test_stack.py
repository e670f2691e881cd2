"""The whole stack through `positioning up` / `down`, the story, and the web client in Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_edge_port, free_port, port_in_use
from loadtest.story import Story, StoryConfig
from runtime.state_owner import CLUSTER_FILE
from tests.conftest import unique_settings
from tests.e2e.local_stack import LocalStack, running
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODEL_LATENCY_MS = 300.0


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home = tmp_path_factory.mktemp("stack")
    settings = unique_settings(
        kafka_bootstrap, home, origin_port=free_port(), model_latency_ms=MODEL_LATENCY_MS,
        edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    with running(LocalStack(settings)) as local:
        yield local


def _login(stack: LocalStack, user: str, ip: str) -> dict:
    response = httpx.post(f"{stack.origin}/login", json={"user_id": user, "ip": ip}, timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def test_up_serves_offers_at_both_edges(stack: LocalStack) -> None:
    ticket = _login(stack, "e2e-user", "133.11.0.1")["ticket"]
    for region in ("eu", "us"):
        response = httpx.get(f"{stack.edge(region)}/offers/{ticket}", params={"wait": 20}, timeout=30)
        assert response.status_code == 200
        assert response.json()["currency"] == "JPY"
        assert response.headers["x-edge-region"] == region


def test_up_is_idempotent_and_brings_back_a_crashed_component(stack: LocalStack) -> None:
    before = stack.pids()
    again = stack.cli("up")
    assert again.returncode == 0 and "running" in again.stdout
    assert stack.pids() == before

    os.killpg(before["edge-eu"], signal.SIGKILL)
    wait_until(lambda: not port_in_use("127.0.0.1", stack.settings.edge_ports["eu"]), 10,
               "the killed edge to release its port")
    revived = stack.cli("up")
    assert revived.returncode == 0, revived.stdout + revived.stderr
    after = stack.pids()
    assert after["edge-eu"] != before["edge-eu"]
    assert {k: v for k, v in after.items() if k != "edge-eu"} == \
        {k: v for k, v in before.items() if k != "edge-eu"}
    ready = httpx.get(f"{stack.edge('eu')}/readyz", timeout=5).json()
    assert ready["resumed_from"], "the restarted edge resumed from its own state"


def test_story_positioned_and_pushed_beat_sync(stack: LocalStack) -> None:
    config = StoryConfig(users=4, gap_s=0.8, concurrency=4, origin_one_way_ms=30,
                         edge_one_way_ms=3)
    report = asyncio.run(Story(stack.settings, config).run(progress=False))
    assert report["errors"] == []
    assert set(report["ways"]) == {"sync", "positioned", "front-door", "pushed"}
    assert all(report["ways"][w]["n"] == 4 for w in report["ways"])
    sync = report["ways"]["sync"]["p50_ms"]
    assert sync >= MODEL_LATENCY_MS
    assert report["ways"]["positioned"]["p50_ms"] < sync
    assert report["ways"]["pushed"]["p50_ms"] < sync
    assert report["distances"] == {"origin_one_way_ms": 30, "edge_one_way_ms": 3}
    assert report["positioning_lag"]["n"] == 4
    assert report["lookups"]["front-door"]["n"] == 4 and report["lookups"]["positioned"]["n"] == 4


def test_story_command_prints_the_table_and_writes_the_report(stack: LocalStack) -> None:
    result = stack.cli("story", "--users", "2", "--gap", "0.5", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "speedup p50" in result.stdout and "positioned" in result.stdout
    assert "through the front door p50" in result.stdout
    report = json.loads((stack.settings.home / "reports" / "story-latest.json").read_text())
    assert report["ways"]["pushed"]["n"] == 2
    assert (stack.settings.home / "reports" / "story-latest.html").read_text().startswith("<!doctype")


@pytest.mark.browser
def test_web_client_in_chromium(stack: LocalStack, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    screenshot = tmp_path / "web-client.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            # The page's policy allows no inline script or style: Chromium reports each
            # thing it blocks on the console.
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text)
                    if "Content Security Policy" in m.text else None)
            page.goto(stack.origin + "/")
            page.select_option("#user-select", "kenji|133.11.0.1")
            page.fill("#gap", "800")
            page.click("#login")
            page.wait_for_selector("[data-way=pushed] .waited", timeout=30_000)
            offer_text = page.inner_text("#offer")
            waited = {way: float(page.get_attribute(f"[data-way={way}] .waited", "data-ms") or "nan")
                      for way in ("sync", "positioned", "pushed")}
            seg_left = page.eval_on_selector("[data-way=sync] .seg", "e => e.style.left")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert blocked == []
    assert seg_left.endswith("%")  # the timeline is drawn, through the CSSOM
    assert "kenji" in offer_text and "JPY" in offer_text
    assert page_rows(offer_text) == 8
    assert waited["sync"] >= MODEL_LATENCY_MS
    assert waited["positioned"] < waited["sync"] and waited["pushed"] < waited["sync"]
    assert screenshot.stat().st_size > 10_000
    artifacts = REPO / ".positioning" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, artifacts / "web-client.png")


def page_rows(offer_text: str) -> int:
    return sum(1 for line in offer_text.splitlines() if "\t" in line and "category" not in line)


def test_down_leaves_no_process_and_no_port(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`down` stops what `up` started in the home, whatever the environment says now."""
    settings = unique_settings(kafka_bootstrap, tmp_path, origin_port=free_port(),
                               edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    local = LocalStack(settings)
    assert local.cli("up").returncode == 0
    pids = local.pids()
    assert len(pids) == 5   # worker, origin, two edges, the front door
    # The worker's state and each edge's store name the cluster they were made from.
    owners = {(d / CLUSTER_FILE).read_text() for d in (
        settings.worker_state_dir, settings.edge_data_dir("eu"), settings.edge_data_dir("us"))}
    assert len(owners) == 1 and len(owners.pop().strip()) == 22

    # An `up` with the edges elsewhere would orphan the running ones: refused.
    moved = LocalStack(settings.replace(edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}")))
    refused = moved.cli("up")
    assert refused.returncode == 1 and "earlier `up`" in refused.stderr, refused.stderr
    assert local.pids() == pids

    # `down` from another shell, with only the home set: the edges' ports are not the
    # default ones, and it stops them all the same.
    shell = {k: v for k, v in os.environ.items()
             if not k.startswith(("POSITIONING_", "KAFKA_"))}
    down = subprocess.run([sys.executable, "-m", "cli.main", "down"], capture_output=True,
                          text=True, timeout=120,
                          env={**shell, "POSITIONING_HOME": str(settings.home)})
    assert down.returncode == 0, down.stderr
    assert all(f"{name} " in down.stdout for name in ("edge-eu", "edge-us", "origin", "worker"))
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    ports = [settings.origin_port, *settings.edge_ports.values(),
             settings.front_door_host_port[1]]
    assert not any(port_in_use("127.0.0.1", port) for port in ports)


def test_up_names_the_component_that_cannot_start(kafka_bootstrap: str, tmp_path: Path) -> None:
    import socket

    settings = unique_settings(kafka_bootstrap, tmp_path, origin_port=free_port(),
                               edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    local = LocalStack(settings)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.origin_port))
        squatter.listen()
        result = local.cli("up")
    try:
        assert result.returncode == 1
        assert "origin" in result.stderr and "already in use" in result.stderr
    finally:
        local.cli("down")
