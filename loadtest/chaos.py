"""`positioning chaos`: fault injection with counting, a small Jepsen for this system.

Each run streams logins through the origin (every login with an
``Idempotency-Key``, retried with the same key on 503 or no answer), SIGKILLs
one component at a random moment, keeps it down for a random while, and
brings it back through the same code as ``positioning up``. Then it checks
the promise, counting every way it can break:

- lost: a 202 ticket whose offer is missing on some edge;
- inconsistent: an offer that differs between edges;
- wrong_visits: a user whose offers' ``visit`` numbers are not exactly 1..n
  for the n tickets the clients received;
- phantoms: an offer on ``offers`` for one of the run's users whose ticket
  no client received;
- missing_tombstones (after the last run, once the tickets expired): an
  offer whose last record on ``offers`` is not a tombstone.

It runs its own stack (home ``<home>/chaos/stack``, short ticket TTL) so
that it never touches the data of a stack in use; the ports are the
configured ones, so a running stack must be stopped first. With
``workers`` > 1 the stack runs that many workers in one consumer group
(worker-1..N) and ``--kill worker`` SIGKILLs one of them at random: its
partitions move to the others until it is back. Results go to
``<home>/chaos/chaos-<time>.json`` and ``chaos-latest.json``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from devstack.broker.cluster import LocalCluster
from devstack.processes import kill
from devstack.stack import Component, Stack, components
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from schemas.codec import offer_codec

COMPONENTS = ("worker", "edge", "origin", "broker")
COUNTS = ("lost", "wrong_visits", "phantoms", "inconsistent", "missing_tombstones")
RETRYABLE = frozenset({408, 503})
"""Answers that say the login was not taken, so the same request may be sent again (RFC
9110): 503, Kafka did not acknowledge it in time; 408, the origin did not receive the
request within its head time-out (a load generator starved of CPU can connect and send
its request seconds later)."""


@dataclass(frozen=True)
class ChaosConfig:
    kill: tuple[str, ...] = ("worker",)
    runs: int = 20
    logins: int = 500
    rate: float = 100.0          # logins per second
    users: int = 50              # distinct users per run
    max_down_s: float = 12.0     # a killed component stays down a random 0..this long
    ttl_s: int = 60              # ticket TTL of the chaos stack
    model_latency_ms: float = 100.0
    login_deadline_s: float = 180.0   # a client retries its login this long, then gives up
    check_timeout_s: float = 120.0    # how long an offer may take to reach every edge
    seed: int | None = None
    keep_stack: bool = False
    workers: int = 1             # worker processes; --kill worker SIGKILLs one at random
    nodes: int | None = None     # Kafka nodes (None: the settings'); --kill broker SIGKILLs one


@dataclass
class Acked:
    user_id: str
    token: str
    ticket_id: str
    expires_at: int


@dataclass
class RunResult:
    run: int
    component: str
    killed: str = ""
    kill_at_s: float = 0.0
    down_s: float = 0.0
    acked: int = 0
    retries: int = 0
    gave_up: int = 0
    lost: int = 0
    wrong_visits: int = 0
    phantoms: int = 0
    inconsistent: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)


def chaos_settings(settings: Settings, config: ChaosConfig) -> Settings:
    """The chaos stack: the same ports and cluster, a home and TTL of its own."""
    return settings.replace(home=settings.home / "chaos" / "stack", ticket_ttl_s=config.ttl_s,
                            expiry_sweep_s=1.0, model_latency_ms=config.model_latency_ms,
                            workers=config.workers,
                            kafka_nodes=config.nodes or settings.kafka_nodes)


def instances(settings: Settings, component: str) -> list[Component]:
    """The stack's processes of one kind: ``worker`` (or worker-1..N), ``origin``, edge-*."""
    return [c for c in components(settings)
            if c.name == component or c.name.startswith(f"{component}-")]


class Chaos:
    def __init__(self, settings: Settings, config: ChaosConfig,
                 say: Any = print) -> None:
        unknown = set(config.kill) - set(COMPONENTS)
        if unknown:
            raise ValueError(f"cannot kill {sorted(unknown)}; choose from {COMPONENTS}")
        if config.workers < 1:
            raise ValueError(f"--workers must be at least 1, not {config.workers}")
        if "broker" in config.kill and settings.uses_external_kafka:
            raise ValueError("--kill broker needs the local broker; KAFKA_BOOTSTRAP_SERVERS "
                             "points at a cluster this command does not manage")
        self.settings = chaos_settings(settings, config)
        self.config = config
        self.say = say
        self.rng = random.Random(config.seed)
        self.stack = Stack(self.settings, say=lambda _: None)
        self.codec = offer_codec()
        self.acked: list[Acked] = []
        self.stamp = time.strftime("%Y%m%d-%H%M%S")

    # -- the whole command -------------------------------------------------
    def run(self, progress: bool = True) -> dict[str, Any]:
        results: list[RunResult] = []
        plan = [c for c in self.config.kill for _ in range(self.config.runs)]
        bar = tqdm(total=len(plan), unit="run", disable=not progress)
        try:
            # Inside the try: a component that does not come up must not leave the
            # others of this stack of its own running.
            self.stack.up()
            start_offsets = asyncio.run(self._end_offsets())
            for number, component in enumerate(plan, 1):
                result = asyncio.run(self._run_once(number, component))
                results.append(result)
                bar.set_postfix(lost=sum(r.lost for r in results),
                                wrong=sum(r.wrong_visits for r in results))
                bar.update(1)
            bar.close()
            missing_tombstones, tombstone_examples = asyncio.run(
                self._check_tombstones(start_offsets))
        finally:
            bar.close()
            if not self.config.keep_stack:
                self.stack.down()
        return self._report(results, missing_tombstones, tombstone_examples)

    # -- one run -----------------------------------------------------------
    async def _run_once(self, number: int, component: str) -> RunResult:
        result = RunResult(run=number, component=component)
        started = time.monotonic()
        users = [f"chaos-{self.stamp}-{number}-{i}" for i in range(self.config.users)]
        before = await self._end_offsets()
        stream_s = self.config.logins / self.config.rate
        result.kill_at_s = round(self.rng.uniform(0.1, 0.7) * stream_s, 2)
        result.down_s = round(self.rng.uniform(0.0, self.config.max_down_s), 2)
        acked: list[Acked] = []
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        origin = f"http://{self.settings.origin_host}:{self.settings.origin_port}"
        async with httpx.AsyncClient(base_url=origin, limits=limits, timeout=10) as http:
            killer = asyncio.create_task(self._kill_and_restart(component, result))
            logins = []
            for i in range(self.config.logins):
                delay = started + i / self.config.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                logins.append(asyncio.create_task(
                    self._login(http, self.rng.choice(users), result, acked)))
            await asyncio.gather(*logins)
            await killer
        self.acked.extend(acked)
        await self._check_edges(acked, result)
        await self._check_phantoms(users, acked, before, result)
        result.acked = len(acked)
        result.seconds = round(time.monotonic() - started, 1)
        return result

    async def _kill_and_restart(self, component: str, result: RunResult) -> None:
        await asyncio.sleep(result.kill_at_s)
        result.killed = await asyncio.to_thread(self._kill, component)
        await asyncio.sleep(result.down_s)
        await asyncio.to_thread(self.stack.up)

    def _kill(self, component: str) -> str:
        """SIGKILL one instance of the component (a Kafka node, edge or worker chosen at
        random); its name."""
        if component == "broker":
            nodes = LocalCluster(self.settings).status().nodes
            running = [n for n in nodes if n.running and n.pid is not None]
            if not running:
                raise RuntimeError("no Kafka node of the chaos stack is running")
            node = self.rng.choice(running)
            assert node.pid is not None
            kill(node.pid)
            return "broker" if len(nodes) == 1 else f"kafka-{node.node_id}"
        victim = self.rng.choice(instances(self.settings, component))
        pid = self.stack.pid(victim)
        if pid is None:
            raise RuntimeError(f"{victim.name} is not running")
        kill(pid)
        return victim.name

    async def _login(self, http: httpx.AsyncClient, user_id: str, result: RunResult,
                     acked: list[Acked]) -> None:
        """POST /login until 202, always with the same Idempotency-Key; a ``RETRYABLE``
        answer or no answer is tried again, anything else ends the run."""
        key = str(uuid.uuid4())
        deadline = time.monotonic() + self.config.login_deadline_s
        attempt = 0
        while time.monotonic() < deadline:
            try:
                response = await http.post("/login", json={"user_id": user_id, "ip": "8.8.8.8"},
                                           headers={"Idempotency-Key": key})
                if response.status_code == 202:
                    body = response.json()
                    acked.append(Acked(user_id, body["ticket"], body["ticket_id"],
                                       body["expires_at"]))
                    return
                if response.status_code not in RETRYABLE:
                    raise RuntimeError(f"POST /login answered {response.status_code}: "
                                       f"{response.text[:200]}")
            except httpx.TransportError:
                pass  # no answer: the origin or the network is down; retry the same key
            attempt += 1
            result.retries += 1
            await asyncio.sleep(min(0.1 * 2 ** min(attempt, 4), 1.0))
        result.gave_up += 1

    # -- checks --------------------------------------------------------------
    async def _check_edges(self, acked: list[Acked], result: RunResult) -> None:
        """Every ticket's offer on every edge, identical; visits 1..n per user."""
        edges = [f"http://{self.settings.edge_host}:{port}"
                 for port in self.settings.edge_ports.values()]
        deadline = time.monotonic() + self.config.check_timeout_s
        gate = asyncio.Semaphore(64)
        offers: dict[str, list[dict[str, Any] | None]] = {}

        why_missing: dict[str, str] = {}

        async def fetch(http: httpx.AsyncClient, edge: str, ticket: Acked) -> dict[str, Any] | None:
            async with gate:
                last = "no answer"
                while time.monotonic() < deadline:
                    try:
                        response = await http.get(f"{edge}/offers/{ticket.token}",
                                                  params={"wait": 10})
                    except httpx.TransportError as exc:
                        last = repr(exc)
                        await asyncio.sleep(0.5)
                        continue
                    if response.status_code == 200:
                        return response.json()
                    last = f"{response.status_code} {response.text[:120]}"
                    if response.status_code not in (404, 503):
                        break
                why_missing[ticket.ticket_id] = f"{edge}: {last}"
                return None

        async with httpx.AsyncClient(timeout=15) as http:
            for ticket in acked:
                offers[ticket.ticket_id] = []
            found = await asyncio.gather(*(fetch(http, edge, t) for t in acked for edge in edges))
        for i, ticket in enumerate(acked):
            copies = found[i * len(edges):(i + 1) * len(edges)]
            if any(copy is None for copy in copies):
                result.lost += 1
                if len(result.examples) < 5:
                    result.examples.append(f"lost {ticket.ticket_id} of {ticket.user_id} "
                                           f"({why_missing.get(ticket.ticket_id)})")
                continue
            if any(copy != copies[0] for copy in copies[1:]):
                result.inconsistent += 1
            offers[ticket.ticket_id] = copies
        visits: dict[str, list[int]] = defaultdict(list)
        for ticket in acked:
            copies = offers[ticket.ticket_id]
            if copies:
                visits[ticket.user_id].append(int(copies[0]["visit"]))  # type: ignore[index]
        counts: defaultdict[str, int] = defaultdict(int)
        for ticket in acked:
            counts[ticket.user_id] += 1
        for user, seen in visits.items():
            if sorted(seen) != list(range(1, counts[user] + 1)):
                result.wrong_visits += 1
                if len(result.examples) < 5:
                    result.examples.append(f"{user}: visits {sorted(seen)}")

    async def _check_phantoms(self, users: list[str], acked: list[Acked],
                              before: dict[int, int], result: RunResult) -> None:
        """Offers for this run's users whose ticket no client received."""
        wanted = set(users)
        received = {t.ticket_id for t in acked}
        phantoms = set()
        async for record in self._records(before):
            if record.value is None:
                continue
            offer = self.codec.decode(record.value)
            if offer["user_id"] in wanted and offer["ticket_id"] not in received:
                phantoms.add(offer["ticket_id"])
        result.phantoms = len(phantoms)

    async def _check_tombstones(self, start: dict[int, int]) -> tuple[int, list[str]]:
        """After every ticket expired: each acked ticket's last record is a tombstone."""
        if not self.acked:
            return 0, []
        last_expiry_s = max(t.expires_at for t in self.acked) / 1e6
        # Expiry, plus sweeps of the edges and the worker, plus a margin.
        await asyncio.sleep(max(0.0, last_expiry_s - time.time()) + 3 * self.settings.expiry_sweep_s
                            + 5)
        wanted = {t.ticket_id.encode() for t in self.acked}
        deadline = time.monotonic() + 60
        while True:
            last: dict[bytes, bytes | None] = {}
            async for record in self._records(start):
                if record.key in wanted:
                    last[record.key] = record.value
            missing = [k.decode() for k, v in last.items() if v is not None]
            if not missing or time.monotonic() > deadline:
                return len(missing), missing[:5]
            await asyncio.sleep(2)

    # -- Kafka ---------------------------------------------------------------
    async def _end_offsets(self) -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
        **client_options(self.settings, Role.ADMIN),
                                    group_id=None)
        await _start(consumer)
        try:
            await consumer.topics()  # a metadata request, so that the partitions are known
            partitions = consumer.partitions_for_topic(self.settings.offers_topic) or set()
            tps = [TopicPartition(self.settings.offers_topic, p) for p in partitions]
            ends = await consumer.end_offsets(tps) if tps else {}
            return {tp.partition: end for tp, end in ends.items()}
        finally:
            await consumer.stop()

    async def _records(self, start: dict[int, int]) -> Any:
        """The records of ``offers`` from ``start`` (partition -> offset) to the end now."""
        ends = await self._end_offsets()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
        **client_options(self.settings, Role.ADMIN),
                                    group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await _start(consumer)
        try:
            tps = {p: TopicPartition(self.settings.offers_topic, p) for p in ends}
            consumer.assign(list(tps.values()))
            remaining = {}
            for p, tp in tps.items():
                consumer.seek(tp, start.get(p, 0))
                if ends[p] > start.get(p, 0):
                    remaining[p] = ends[p]
            while remaining:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < remaining.get(tp.partition, -1):
                            yield record
                    if records and records[-1].offset + 1 >= remaining.get(tp.partition, 0):
                        remaining.pop(tp.partition, None)
                for p in list(remaining):
                    if await consumer.position(tps[p]) >= remaining[p]:
                        remaining.pop(p)
        finally:
            await consumer.stop()

    # -- report --------------------------------------------------------------
    def _report(self, results: list[RunResult], missing_tombstones: int,
                tombstone_examples: list[str]) -> dict[str, Any]:
        per_component: dict[str, dict[str, int]] = {}
        for component in self.config.kill:
            mine = [r for r in results if r.component == component]
            per_component[component] = {
                "runs": len(mine), "acked": sum(r.acked for r in mine),
                "retries": sum(r.retries for r in mine), "gave_up": sum(r.gave_up for r in mine),
                **{k: sum(getattr(r, k) for r in mine) for k in COUNTS if k != "missing_tombstones"},
            }
        summary = {
            "runs": len(results), "acked": sum(r.acked for r in results),
            **{k: sum(getattr(r, k) for r in results) for k in COUNTS if k != "missing_tombstones"},
            "missing_tombstones": missing_tombstones,
            "gave_up": sum(r.gave_up for r in results),
        }
        return {"config": asdict(self.config), "started": self.stamp, "summary": summary,
                "components": per_component, "tombstone_examples": tombstone_examples,
                "runs": [asdict(r) for r in results]}


async def _start(consumer: AIOKafkaConsumer) -> None:
    """Start a consumer so that it can be stopped at once: aiokafka 0.14's stop()
    raises CancelledError if the consumer's no-group task never ran."""
    await consumer.start()
    await asyncio.sleep(0)


def passed(report: dict[str, Any]) -> bool:
    """Nothing lost, miscounted, invented, split or left without its tombstone."""
    summary = report["summary"]
    return all(summary[k] == 0 for k in (*COUNTS, "gave_up"))


def render_table(report: dict[str, Any]) -> str:
    header = ("component", "runs", "acked", "retries", "lost", "wrong_visits", "phantoms",
              "inconsistent", "gave_up")
    rows = [header]
    for component, c in report["components"].items():
        rows.append((component, *(str(c[k]) for k in header[1:])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
             for row in rows]
    s = report["summary"]
    lines.append(f"missing tombstones (all runs, after expiry): {s['missing_tombstones']}")
    lines.append("PASSED: every acked login has exactly one offer on every edge"
                 if passed(report) else "FAILED: see the counts above and the report")
    return "\n".join(lines)


def write_report(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"chaos-{report['started']}.json"
    text = json.dumps(report, indent=2)
    path.write_text(text)
    (directory / "chaos-latest.json").write_text(text)
    return path
