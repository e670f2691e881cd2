"""Logins through a broker failover: what a user sees when a Kafka node dies.

Brings up the whole stack on a 3-node cluster of its own (a temporary home,
free ports, topics with RF 3 and min ISR 2), sends logins at a fixed rate
with an ``Idempotency-Key`` each (no client retry: every answer counts),
SIGKILLs the node leading partitions of ``logins`` a few seconds in (the
quorum leader too on every other run), restarts it after the run, and
reports per run the login latency p50/p99/max, the 503s and the window
from the first to the last one::

    python -m loadtest.failover --runs 4

Figures: the README's Deploying section and docs/deploying.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from devstack.broker.cluster import LocalCluster
from devstack.ports import free_edge_port, free_port, free_port_run
from devstack.processes import kill
from devstack.stack import Stack
from loadtest.bench.login_load import Connection
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings


@dataclass
class Run:
    killed_node: int
    quorum_leader: bool
    logins: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    accepted_at_s: list[float] = field(default_factory=list)
    """Due times (s from the run's start) of the logins answered 202."""
    unavailable_at_s: list[float] = field(default_factory=list)
    """Due times of the logins answered 503."""

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

        window = (round(max(self.unavailable_at_s) - min(self.unavailable_at_s), 2)
                  if self.unavailable_at_s else 0.0)
        return {"killed_node": self.killed_node, "quorum_leader": self.quorum_leader,
                "logins": self.logins, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
                "max_ms": round(ordered[-1], 1), "503s": len(self.unavailable_at_s),
                "503_window_s": window}


async def _leaders(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> leader node id of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in described["partitions"]}
    finally:
        await admin.close()


def _victim(cluster: LocalCluster, settings: Settings, quorum_leader: bool) -> int:
    """The node to kill: the quorum leader, or the node leading most ``logins`` partitions
    among the others."""
    status = cluster.status()
    leader = status.leader.leader_id if status.leader is not None else None
    if quorum_leader and leader is not None:
        return leader
    led: dict[int, int] = {}
    for node in asyncio.run(_leaders(settings, settings.logins_topic)).values():
        led[node] = led.get(node, 0) + 1
    candidates = [n for n in sorted(led, key=led.__getitem__, reverse=True) if n != leader]
    return candidates[0] if candidates else max(led, key=led.__getitem__)


async def _logins(host: str, port: int, rate: float, seconds: float, run: Run,
                  kill_at_s: float, kill_node: Callable[[], None]) -> None:
    """Open-loop logins at ``rate``/s on keep-alive connections (the bench's cheap client),
    each timed from its due time, so a stalled login cannot delay the next ones."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    started = time.perf_counter()

    async def one(due: float) -> None:
        conn = (Connection(*await asyncio.open_connection(host, port)) if pool.empty()
                else await pool.get())
        body = orjson.dumps({"user_id": f"f-{uuid.uuid4().hex[:8]}", "ip": "81.2.69.160"})
        status, _ = await conn.post(host, "/login", body, str(uuid.uuid4()))
        pool.put_nowait(conn)
        run.logins += 1
        run.latencies_ms.append((time.perf_counter() - due) * 1000)
        if status == 202:
            run.accepted_at_s.append(due - started)
        elif status == 503:
            run.unavailable_at_s.append(due - started)
        else:
            raise RuntimeError(f"POST /login answered {status}")

    tasks = []
    killed = False
    for i in range(int(rate * seconds)):
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if not killed and time.perf_counter() - started >= kill_at_s:
            await asyncio.to_thread(kill_node)
            killed = True
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)


def measure(runs: int, home: Path, rate: float = 100.0, seconds: float = 15.0,
            kill_at_s: float = 5.0, report: Callable[[Run], None] = lambda _: None) -> list[Run]:
    """``runs`` failovers under ``rate`` logins/s, each ``seconds`` long with the node killed
    ``kill_at_s`` in (run 0 a follower of the quorum, run 1 its leader, and so on); ``report``
    is called after each run.

    Raises:
        RuntimeError: a login was answered with neither 202 nor 503.
    """
    settings = Settings.from_env({}).replace(
        home=home, kafka_nodes=3, kafka_listen=f"127.0.0.1:{free_port_run(6)}",
        origin_port=free_port(), worker_web_port=free_port(),
        edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"), ticket_secret="failover:" + "k" * 32,
        front_door=False)  # logins go to the origin directly
    stack = Stack(settings, say=lambda _: None)
    cluster = LocalCluster(settings)
    results: list[Run] = []
    try:
        stack.up()
        for i in range(runs):
            quorum_leader = i % 2 == 1
            victim = _victim(cluster, settings, quorum_leader)
            run = Run(victim, quorum_leader)

            def kill_victim(node_id: int = victim) -> None:
                pid = next(n.pid for n in cluster.status().nodes if n.node_id == node_id)
                if pid is not None:
                    kill(pid)

            asyncio.run(_logins("127.0.0.1", settings.origin_port, rate, seconds, run,
                                kill_at_s, kill_victim))
            results.append(run)
            report(run)
            stack.up()  # the killed node comes back, as `positioning up` brings it
    finally:
        stack.down()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="logins per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        results = [run.summary() for run in measure(
            args.runs, Path(tmp), args.rate,
            report=lambda run: print(json.dumps(run.summary()), flush=True))]
    for key in ("p99_ms", "max_ms", "503_window_s"):
        values = [float(str(r[key])) for r in results]
        print(f"{key}: median {statistics.median(values)}, range {min(values)}-{max(values)}")


if __name__ == "__main__":
    main()
