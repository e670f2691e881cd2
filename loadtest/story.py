"""`positioning story`: how long a user waits for the offer, three or four ways, over simulated distance.

Every user is near an edge (5 ms each way by default) and far from the
origin (60 ms each way). Each user gets the offer each of these ways:

- **sync**: ``POST /offers/sync`` at the far origin; the offer is computed
  in the request (the old way). Wait = that request.
- **positioned**: ``POST /login`` at the origin (answered once Kafka has the
  event), then the user navigates for ``gap`` seconds, then ``GET`` the
  offer at the near edge with ``?wait``. Wait = login + fetch.
- **front-door**: positioned, but the offer is fetched through the front
  door (``positioning up``'s HAProxy, as near as the edge: a CDN's point of
  presence), which routes it by the region cookie the login answer names.
  Only when the front door is on.
- **pushed**: log in, navigate, then subscribe to the edge's server-sent
  events. Wait = login + time to the offer event.

Users arrive as people do, one after another, not all in the same
millisecond: the first ``concurrency`` users start ``gap / concurrency``
apart, and each later one when a user before it is done. (Started together,
they sent their logins in bursts of ``concurrency``, and the positioning lag
measured the queue of a burst rather than one login's way.)

The gap is the user's own time (reading the page), not waiting. It also
reports the positioning lag: login accepted → offer applied at the edge,
and the lookup alone (the ``GET`` after the gap) straight to the edge and
through the front door: the front door's cost per lookup.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from devstack.front_door import client_ca, connectable
from loadtest.proxy import DelayProxy, Link
from loadtest.report_html import render_html
from loadtest.stats import latency_summary
from loadtest.synthetic import ips_by_country
from origin.regions import REGION_COOKIE
from runtime.settings import Settings

WAYS = ("sync", "positioned", "front-door", "pushed")
# The ways whose lookup alone is timed: straight to the edge, through the front door.
LOOKUP_WAYS = {"positioned": "straight to the edge", "front-door": "through the front door"}
LOGIN_ATTEMPTS = 5


@dataclass(frozen=True)
class StoryConfig:
    users: int = 50
    gap_s: float = 1.0
    origin_one_way_ms: float = 60.0
    edge_one_way_ms: float = 5.0
    region: str = "eu"
    concurrency: int = 10
    seed: int = 1


@dataclass
class Timings:
    waits_us: dict[str, list[int]] = field(default_factory=lambda: {w: [] for w in WAYS})
    positioning_lag_us: list[int] = field(default_factory=list)
    lookups_us: dict[str, list[int]] = field(default_factory=lambda: {w: [] for w in LOOKUP_WAYS})
    errors: list[str] = field(default_factory=list)


class Story:
    def __init__(self, settings: Settings, config: StoryConfig) -> None:
        self.settings = settings
        self.config = config
        self.timings = Timings()
        self.origin_proxy: DelayProxy | None = None
        self.edge_proxy: DelayProxy | None = None
        self.front_door_proxy: DelayProxy | None = None
        self.front_door_http: httpx.AsyncClient | None = None
        self.ways = tuple(w for w in WAYS if w != "front-door" or settings.front_door)

    async def _login(self, http: httpx.AsyncClient, user_id: str, ip: str) -> tuple[dict[str, Any], int]:
        """POST /login with an Idempotency-Key, retried with the same key on 503 or no answer.

        The wait includes the retries: that is what the user waited.
        """
        assert self.origin_proxy is not None
        key = str(uuid.uuid4())
        t0 = time.perf_counter_ns()
        for attempt in range(LOGIN_ATTEMPTS):
            try:
                response = await http.post(f"{self.origin_proxy.url}/login",
                                           json={"user_id": user_id, "ip": ip},
                                           headers={"Idempotency-Key": key})
            except httpx.TransportError:
                if attempt == LOGIN_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5)
                continue
            if response.status_code != 503:
                break
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        spent = (time.perf_counter_ns() - t0) // 1000
        if response.status_code != 202:
            raise RuntimeError(f"login failed: {response.status_code} {response.text[:200]}")
        return response.json(), spent

    async def sync(self, http: httpx.AsyncClient, user_id: str, ip: str) -> None:
        assert self.origin_proxy is not None
        t0 = time.perf_counter_ns()
        response = await http.post(f"{self.origin_proxy.url}/offers/sync",
                                   json={"user_id": user_id, "ip": ip})
        spent = (time.perf_counter_ns() - t0) // 1000
        if response.status_code != 200:
            raise RuntimeError(f"sync failed: {response.status_code}")
        self.timings.waits_us["sync"].append(spent)

    async def positioned(self, http: httpx.AsyncClient, user_id: str, ip: str) -> None:
        assert self.edge_proxy is not None
        await self._positioned(http, user_id, ip, "positioned", http, self.edge_proxy.url)

    async def front_door(self, http: httpx.AsyncClient, user_id: str, ip: str) -> None:
        """Through the front door, over HTTPS (the home's CA checked) unless its TLS is off."""
        assert self.front_door_proxy is not None and self.front_door_http is not None
        proxy = self.front_door_proxy
        url = f"{self.settings.front_door_scheme}://{proxy.listen_host}:{proxy.port}"
        await self._positioned(http, user_id, ip, "front-door", self.front_door_http, url)

    async def _positioned(self, http: httpx.AsyncClient, user_id: str, ip: str, way: str,
                          fetch: httpx.AsyncClient, near: str) -> None:
        """Log in, navigate, then ``GET`` the offer with ``?wait`` from ``near`` with
        ``fetch`` (an edge, or the front door, which routes by the region cookie the login
        answer names)."""
        login, login_us = await self._login(http, user_id, ip)
        await asyncio.sleep(self.config.gap_s)
        t0 = time.perf_counter_ns()
        response = await fetch.get(f"{near}/offers/{login['ticket']}", params={"wait": 10},
                                   headers={"Cookie": f"{REGION_COOKIE}={login['region']}"})
        fetch_us = (time.perf_counter_ns() - t0) // 1000
        if response.status_code != 200:
            raise RuntimeError(f"{way} fetch failed: {response.status_code} "
                               f"{response.text[:200]}")
        self.timings.waits_us[way].append(login_us + fetch_us)
        self.timings.lookups_us[way].append(fetch_us)
        if way == "positioned":
            applied_at = int(response.headers["x-offer-applied-at"])
            self.timings.positioning_lag_us.append(applied_at - login["login_accepted_at"])

    async def pushed(self, http: httpx.AsyncClient, user_id: str, ip: str) -> None:
        assert self.edge_proxy is not None
        login, login_us = await self._login(http, user_id, ip)
        await asyncio.sleep(self.config.gap_s)
        t0 = time.perf_counter_ns()
        event = None
        async with http.stream("GET", f"{self.edge_proxy.url}/offers/{login['ticket']}/events") as s:
            async for line in s.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    break
        if event != "offer":
            raise RuntimeError(f"the event stream ended with {event!r}")
        self.timings.waits_us["pushed"].append(login_us + (time.perf_counter_ns() - t0) // 1000)

    async def run(self, progress: bool = True) -> dict[str, Any]:
        cfg = self.config
        edge_port = self.settings.edge_ports[cfg.region]
        self.origin_proxy = await DelayProxy(Link("origin", self.settings.origin_host,
                                                  self.settings.origin_port,
                                                  cfg.origin_one_way_ms / 1000)).start()
        self.edge_proxy = await DelayProxy(Link(f"edge-{cfg.region}", self.settings.edge_host,
                                                edge_port, cfg.edge_one_way_ms / 1000)).start()
        if self.settings.front_door:
            host, port = self.settings.front_door_host_port
            self.front_door_proxy = await DelayProxy(Link(
                "front-door", connectable(host), port, cfg.edge_one_way_ms / 1000)).start()
            ca = client_ca(self.settings)
            self.front_door_http = httpx.AsyncClient(
                timeout=30, verify=ssl.create_default_context(cafile=str(ca)) if ca else True)
        rng = random.Random(cfg.seed)
        pools = ips_by_country()
        countries = sorted(pools)
        run_id = f"{int(time.time())}-{rng.randrange(10**6):06d}"
        limiter = asyncio.Semaphore(cfg.concurrency)
        bar = tqdm(total=cfg.users * len(self.ways), unit="offer", disable=not progress,
                   desc="story")
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                model_latency = (await http.get(
                    f"http://{self.settings.origin_host}:{self.settings.origin_port}/healthz"
                )).json().get("model_latency_ms")

                async def one_user(i: int) -> None:
                    ip = rng.choice(pools[countries[i % len(countries)]])
                    async with limiter:
                        if i < cfg.concurrency:  # arrivals spread over a gap (module docstring)
                            await asyncio.sleep(i * cfg.gap_s / cfg.concurrency)
                        for way in self.ways:
                            user_id = f"story-{run_id}-{i}-{way}"
                            try:
                                await getattr(self, way.replace("-", "_"))(http, user_id, ip)
                            except (RuntimeError, httpx.HTTPError) as exc:
                                self.timings.errors.append(f"{way}: {exc!r}")
                            bar.update(1)

                await asyncio.gather(*(one_user(i) for i in range(cfg.users)))
        finally:
            bar.close()
            await self.origin_proxy.stop()
            await self.edge_proxy.stop()
            if self.front_door_proxy is not None:
                await self.front_door_proxy.stop()
            if self.front_door_http is not None:
                await self.front_door_http.aclose()
        ways = {w: latency_summary(self.timings.waits_us[w]) for w in self.ways}
        speedup = {w: round(ways["sync"]["p50_ms"] / ways[w]["p50_ms"], 2)
                   for w in self.ways
                   if w != "sync" and ways[w].get("n") and ways["sync"].get("n")}
        return {
            "story": "time a user waits for a personal offer",
            "config": asdict(cfg),
            "distances": {"origin_one_way_ms": cfg.origin_one_way_ms,
                          "edge_one_way_ms": cfg.edge_one_way_ms},
            "model_latency_ms": model_latency,
            "ways": ways,
            "speedup_p50_vs_sync": speedup,
            "positioning_lag": latency_summary(self.timings.positioning_lag_us),
            "lookups": {w: latency_summary(self.timings.lookups_us[w])
                        for w in LOOKUP_WAYS if w in self.ways},
            "errors": self.timings.errors,
        }


def render_table(report: dict[str, Any]) -> str:
    d = report["distances"]
    lines = [
        f"Time a user waits for the offer ({report['config']['users']} users; origin "
        f"{d['origin_one_way_ms']:g} ms away, edge {d['edge_one_way_ms']:g} ms away, one way; "
        f"model latency {report['model_latency_ms']} ms; user gap {report['config']['gap_s']:g} s)",
        "",
        f"{'way':<12}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'speedup p50':>13}",
    ]
    for way in report["ways"]:
        s = report["ways"][way]
        if not s.get("n"):
            lines.append(f"{way:<12}{0:>5}{'-':>10}{'-':>10}{'-':>10}")
            continue
        speed = report["speedup_p50_vs_sync"].get(way)
        lines.append(f"{way:<12}{s['n']:>5}{s['p50_ms']:>10.1f}{s['p95_ms']:>10.1f}"
                     f"{s['p99_ms']:>10.1f}{(f'{speed:.1f}x' if speed else '1.0x'):>13}")
    lag = report["positioning_lag"]
    if lag.get("n"):
        lines += ["", f"positioning lag (login accepted -> offer applied at the edge): "
                      f"p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms"]
    lookups = report.get("lookups", {})
    if all(lookups.get(w, {}).get("n") for w in LOOKUP_WAYS):
        straight, door = (lookups[w]["p50_ms"] for w in LOOKUP_WAYS)
        lines += [f"lookup alone (GET ?wait after the gap): straight to the edge p50 "
                  f"{straight:.1f} ms, through the front door p50 {door:.1f} ms "
                  f"({door - straight:+.1f} ms per lookup)"]
    if report["errors"]:
        lines += ["", f"{len(report['errors'])} errors, first: {report['errors'][0]}"]
    return "\n".join(lines)


def write_report(report: dict[str, Any], reports_dir: Path) -> tuple[Path, Path]:
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = reports_dir / f"story-{stamp}.json"
    html_path = reports_dir / f"story-{stamp}.html"
    json_path.write_text(json.dumps(report, indent=2))
    html_path.write_text(render_html(report, render_table(report)))
    (reports_dir / "story-latest.json").write_text(json.dumps(report, indent=2))
    (reports_dir / "story-latest.html").write_text(html_path.read_text())
    return json_path, html_path
