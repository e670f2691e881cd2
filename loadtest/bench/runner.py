"""The benchmarks behind `positioning bench`.

Each figure is measured against a baseline in the same run, on a stack of
its own (a fresh broker on free ports unless KAFKA_BOOTSTRAP_SERVERS is
set, fresh topics, fresh data dirs under ``<home>/bench/``). Results go to
``<home>/bench/bench-<time>.json`` (and ``bench-latest.json``) with a
top-level ``summary``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack.broker.cluster import LocalCluster
from devstack.broker.local import LocalBroker
from devstack.ports import free_edge_port, free_port, free_port_pair, free_port_run
from devstack.stack import Component, Stack, components, worker_component
from engine.offers import compute_offer
from engine.state import new_user_view
from loadtest.bench import wrk
from loadtest.bench.compare import Comparison, compare
from loadtest.bench.cpu import CpuShares
from loadtest.bench.figures import LOAD_GENERATOR, Parts, judge, median_known, summarize
from loadtest.produce import produce
from loadtest.stats import latency_summary
from pipeline.offer_signing import BatchSigning
from pipeline.records import OutRecord
from runtime.acls import ensure_principals
from runtime.kafka_security import Role, client_options, security_files
from runtime.offer_keys import signing_keyring
from runtime.settings import Settings, env_var
from runtime.ticket_secret import ticket_secret
from runtime.topics import ensure_topics
from runtime.waiting import wait_until, wait_until_async
from schemas.codec import offer_codec
from schemas.events import login_event, offer_headers
from schemas.tickets import TicketSigner


class Bench:
    def __init__(self, base: Settings, quick: bool, say: Callable[[str], None] = print) -> None:
        self.quick = quick
        self.say = say
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.root = (base.home / "bench" / f"run-{self.stamp}").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.broker: LocalBroker | None = None

    # -- plumbing ------------------------------------------------------------
    def settings(self, name: str, **changes: Any) -> Settings:
        suffix = f"{name}-{uuid.uuid4().hex[:6]}"
        values: dict[str, Any] = dict(
            home=self.root / name, kafka_bootstrap_servers=self.bootstrap,
            logins_topic=f"logins-{suffix}", offers_topic=f"offers-{suffix}",
            dlq_topic=f"logins.dlq-{suffix}", worker_id=f"bench-{suffix}", worker_web_port=0,
            origin_port=free_port(), edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"),
            # Tickets of an hour, so none expires mid-run (edges refuse a longer lifetime).
            ticket_secret="bench:" + uuid.uuid4().hex, ticket_ttl_s=3600, model_latency_ms=0.0,
            # The bench talks to origin and edges directly; no health checks beside it.
            front_door=False,
            # Its load generators play users of several countries from this machine.
            login_ip_from_body="local",
            **(security_files(self.broker.settings) if self.broker is not None else {}))
        values.update(changes)
        settings = self.base.replace(**values)
        if self.broker is not None or changes.get("kafka_bootstrap_servers"):
            # Each role's principal gets its ACLs on this part's own topics.
            ensure_principals(settings)
        return settings

    def start_broker(self) -> None:
        if self.base.kafka_bootstrap_servers:
            self.bootstrap = self.base.kafka_bootstrap_servers
            return
        self.broker = self._local_broker(self.root)
        self.bootstrap = self.broker.address

    def _local_broker(self, home: Path) -> LocalBroker:
        """A local broker started on free ports, its data under ``home``."""
        broker = LocalBroker(self.base.replace(home=home,
                                               kafka_listen=f"127.0.0.1:{free_port_pair()}"))
        broker.start()
        return broker

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()

    @contextmanager
    def fresh_broker(self, name: str) -> Iterator[None]:
        """Run the block on a broker of its own (a local one only), then return to the first.

        The pipeline's broker CPU at 100 logins/s is a goal; on the broker of
        the earlier parts it would include their topics (1M offers being
        compacted, the worker rounds' logins and changelogs).
        """
        if self.broker is None:
            yield
            return
        first, first_bootstrap = self.broker, self.bootstrap
        self.broker = self._local_broker(self.root / name)
        self.bootstrap = self.broker.address
        try:
            yield
        finally:
            self.broker.stop()
            self.broker, self.bootstrap = first, first_bootstrap

    def edge_component(self, settings: Settings, region: str,
                       env: dict[str, str] | None = None) -> Component:
        port = settings.edge_ports.get(region) or free_edge_port()
        return Component(f"edge-{region}", ["edge", "--region", region, "--port", str(port),
                                            "--data-dir", str(settings.home / f"edge-{region}")],
                         ready_url=f"http://127.0.0.1:{port}/readyz", port=port, env=env or {})

    def _bootstrap_rate(self, settings: Settings, stack: Stack, region: str,
                        verify: bool) -> float:
        """Offers/s of one more fresh edge catching up on ``settings``' signed topic,
        verifying signatures or (``verify=False``) trusting them."""
        env = {} if verify else {env_var("offer_signing"): "off"}
        edge = self.edge_component(settings, region, env)
        stack.run_component(edge, timeout=900)
        try:
            ready = httpx.get(f"http://127.0.0.1:{edge.port}/readyz", timeout=5).json()
        finally:
            stack.stop_component(edge)
        seconds = float(ready["caught_up_after_s"])
        return int(ready["applied_during_catch_up"]) / seconds if seconds else 0.0

    def verification_cost(self, settings: Settings, stack: Stack, first: float) -> dict[str, Any]:
        """Bootstrap with signature checks against without, alternating on one topic: ``first``
        (the verifying bootstrap already run), then without, with, without."""
        verified, trusted = [first], []
        pairs = 2 if self.quick else 3
        for i in range(pairs):
            trusted.append(self._bootstrap_rate(settings, stack, f"trusting{i}", verify=False))
            if i < pairs - 1:
                verified.append(self._bootstrap_rate(settings, stack, f"verifying{i}",
                                                     verify=True))
        ratio = statistics.median(verified) / statistics.median(trusted)
        self.say(f"edge: bootstrap verifying {[round(v) for v in verified]} offers/s, trusting "
                 f"{[round(t) for t in trusted]}: ratio {ratio:.2f}")
        return {"verified_offers_per_s": verified, "trusted_offers_per_s": trusted,
                "ratio": ratio}

    # -- edge: bootstrap, restart, lookups -------------------------------------
    async def _flood(self, settings: Settings, count: int, tickets_path: Path) -> None:
        signer = TicketSigner.from_spec(ticket_secret(settings), settings.ticket_ttl_s)
        template = signer.issue()
        login = login_event(template, "bench-user", "81.2.69.160",
                            accepted_at_us=template.issued_at_us)
        offer = compute_offer(login, new_user_view(), created_at=1)
        payload = offer_codec().encode(offer)
        headers = offer_headers(offer)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), acks=1,
                                    linger_ms=20, max_batch_size=1024 * 1024)
        await producer.start()
        # Signed as the worker signs: a batch at a time, of the size its batches reach.
        keyring = signing_keyring(settings)
        signing = None if keyring is None else BatchSigning(settings.offers_topic, keyring,
                                                           settings.partitions)
        batch_size = max(1, settings.worker_concurrency // 2)
        sample_every = max(1, count // 50_000)
        with open(tickets_path, "w") as sample:
            try:
                pending = []
                batch: list[OutRecord] = []
                for i in range(count):
                    ticket = signer.issue()
                    if i % sample_every == 0:
                        sample.write(ticket.token + "\n")
                    batch.append(OutRecord(settings.offers_topic, ticket.ticket_id.encode(),
                                           payload, headers))
                    if len(batch) >= batch_size or i == count - 1:
                        for r in batch if signing is None else signing.sign(batch):
                            pending.append(await producer.send(r.topic, r.value, key=r.key,
                                                               headers=r.headers))
                        batch = []
                    if len(pending) >= 20_000:
                        await asyncio.gather(*pending)
                        pending.clear()
                await asyncio.gather(*pending)
            finally:
                await producer.stop()

    def edge_bootstrap(self, count: int, name: str = "edge"
                       ) -> tuple[Settings, Stack, Component, Path, dict[str, float]]:
        """``count`` offers written to a topic of their own, then a fresh edge started on it.

        Returns the settings, stack and running edge, the tickets file, and
        ``seconds`` (connected to caught up), ``applied`` and ``wall_seconds``
        (spawn to ready).
        """
        settings = self.settings(name, partitions=6)
        asyncio.run(ensure_topics(settings))
        tickets = self.root / f"{name}-tickets.txt"
        self.say(f"edge: writing {count:,} offers to {settings.offers_topic} ...")
        started = time.perf_counter()
        asyncio.run(self._flood(settings, count, tickets))
        self.say(f"edge: written in {time.perf_counter() - started:.1f}s; bootstrapping a fresh node")
        stack = Stack(settings, say=lambda _: None)
        edge = self.edge_component(settings, "bench")
        spawned = time.perf_counter()
        stack.run_component(edge, timeout=900)
        wall = time.perf_counter() - spawned
        ready = httpx.get(f"http://127.0.0.1:{edge.port}/readyz", timeout=5).json()
        return settings, stack, edge, tickets, {
            "seconds": float(ready["caught_up_after_s"]),
            "applied": int(ready["applied_during_catch_up"]), "wall_seconds": wall}

    def bench_edge(self) -> dict[str, Any]:
        count = 200_000 if self.quick else 1_000_000
        settings, stack, edge, tickets, boot = self.edge_bootstrap(count)
        bootstrap_wall = boot["wall_seconds"]
        seconds, applied = boot["seconds"], int(boot["applied"])
        self.say(f"edge: bootstrap applied {applied:,} in {seconds:.2f}s; waiting for the "
                 "background pass that stores them as served JSON")
        rendered_in = _wait_json(f"http://127.0.0.1:{edge.port}/readyz", timeout=900)
        self.say(f"edge: all served as JSON after {rendered_in:.1f}s more; restarting it")
        verification = (self.verification_cost(settings, stack, applied / seconds)
                        if settings.signs_offers and seconds else None)

        stack.stop_component(edge)
        spawned = time.perf_counter()
        stack.run_component(edge, timeout=120)
        restart = time.perf_counter() - spawned

        self.say("edge: lookups against a bare Starlette endpoint (wrk, alternating rounds)")
        try:
            lookups = self._compare_with_bare("edge", f"http://127.0.0.1:{edge.port}",
                                              wrk.EDGE_LOOKUP_LUA, {"BENCH_TICKETS": str(tickets)})
        finally:
            stack.stop_component(edge)
        return {
            "offers": count, "bootstrap_seconds": seconds, "bootstrap_applied": applied,
            "bootstrap_offers_per_s": applied / seconds if seconds else None,
            "bootstrap_wall_seconds": bootstrap_wall, "restart_ready_s": restart,
            "render_to_json_seconds": rendered_in, "verification": verification,
            "lookup": lookups.as_dict(),
        }

    def _compare_with_bare(self, kind: str, real_url: str, script: str,
                           env: dict[str, str] | None = None) -> Comparison:
        """Alternating wrk rounds against a bare endpoint of this kind
        (loadtest/bench/bare.py, loadtest/bench/compare.py)."""
        rounds, seconds = (2, 4) if self.quick else (3, 8)
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-m", "loadtest.bench.bare", "--kind", kind,
                                 "--port", str(bare_port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)

        def run(url: str, duration: float) -> wrk.WrkResult:
            return wrk.run(url, script, self.root, duration, env=env)

        try:
            _wait_http(f"http://127.0.0.1:{bare_port}/healthz")
            result = compare(run, real_url, f"http://127.0.0.1:{bare_port}", rounds, seconds)
        finally:
            bare.terminate()
            bare.wait(10)
        if result.failed_requests:
            self.say(f"WARNING: {result.failed_requests} requests to {real_url} or its baseline "
                     "failed; the comparison is flagged invalid")
        return result

    # -- origin logins ------------------------------------------------------------
    def bench_origin(self) -> dict[str, Any]:
        settings = self.settings("origin")
        asyncio.run(ensure_topics(settings))
        stack = Stack(settings, say=lambda _: None)
        origin = Component("origin", ["origin"], port=settings.origin_port,
                           ready_url=f"http://127.0.0.1:{settings.origin_port}/readyz")
        stack.run_component(origin)
        self.say("origin: POST /login against a bare Starlette endpoint (wrk, alternating rounds)")
        try:
            logins = self._compare_with_bare("origin", f"http://127.0.0.1:{settings.origin_port}",
                                             wrk.LOGIN_LUA)
        finally:
            stack.stop_component(origin)
        return logins.as_dict()

    # -- positioning latency and pipeline throughput ----------------------------------
    async def _applied_times(self, settings: Settings, logins: list[tuple[str, int]],
                             hops: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
        """Per edge region, each login's positioning lag (µs): accepted at the origin to
        applied at the edge. ``hops``, when given, gets the lag's two halves (µs), split at
        the offer's ``created_at`` (when the worker computed it): ``origin_to_worker`` (the
        origin's produce, the worker's fetch and its work up to the engine) and
        ``worker_to_edge`` (signing, the worker's produce, the edge's fetch and apply)."""
        out: dict[str, list[int]] = {r: [] for r in settings.edge_ports}
        concurrency = 64
        limiter = asyncio.Semaphore(concurrency)
        # Every connection kept alive: httpx keeps 20 by default and closes the rest after
        # each request, and at 3,000 logins/s the closed ones' TIME_WAIT sockets filled
        # the ephemeral port range (the next part found no free ports for its brokers).
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            async def one(region: str, port: int, token: str, accepted: int) -> None:
                async with limiter:
                    r = await _get_retrying(http, f"http://127.0.0.1:{port}/offers/{token}",
                                            params={"wait": 20})
                if r.status_code == 200:
                    applied = int(r.headers["x-offer-applied-at"])
                    out[region].append(applied - accepted)
                    if hops is not None:
                        created = int(r.json()["created_at"])
                        hops["origin_to_worker"].append(created - accepted)
                        hops["worker_to_edge"].append(applied - created)
            await asyncio.gather(*(one(region, port, token, accepted)
                                   for region, port in settings.edge_ports.items()
                                   for token, accepted in logins))
        return out

    def bench_pipeline(self) -> dict[str, Any]:
        """The whole stack: offers/s at full rate, then positioning latency and CPU per process
        at fixed login rates.

        The full-rate part runs first: on the fresh broker ``run`` gives this
        part, it also warms the broker's JIT, whose compiling would otherwise
        be counted in the broker's CPU at 100 logins/s.
        """
        settings = self.settings("pipeline")
        stack = Stack(settings, say=lambda _: None)
        stack.up()
        results: dict[str, Any] = {"positioning": {}}
        rates = (100, 1000) if self.quick else (100, 500, 1000, 3000)
        seconds = 5 if self.quick else 10
        try:
            count = 20_000 if self.quick else 100_000
            self.say(f"pipeline: {count:,} logins as fast as `produce` sends them")
            results["throughput"] = self._throughput(settings, count)
            for rate in rates:
                self.say(f"pipeline: {rate} logins/s for {seconds}s through origin, worker, 2 edges"
                         " (after a 2 s warm-up at that rate)")
                results["positioning"][str(rate)] = self._round(
                    settings, rate, seconds, str(rate), cpu_of=self._stack_pids(stack))
        finally:
            stack.down()
        return results

    def _round(self, settings: Settings, rate: int, seconds: float, name: str,
               cpu_of: dict[str, int | None] | None = None) -> dict[str, Any]:
        """One round of positioning latency: a 2 s warm-up, then ``rate`` logins/s for
        ``seconds``.

        Returns the load generator's summary (``load``), the lag per edge region and
        over all (``edges``, ``all``), its two halves (``hops``), and, when ``cpu_of``
        names the processes (name -> pid), each one's share of one core during the
        measured seconds (``cpu_share_of_one_core``).
        """
        self._login_load(settings, rate, 2, self.root / f"warmup-{name}.tsv")
        out = self.root / f"logins-{name}.tsv"
        cpu = CpuShares(cpu_of, children=LOAD_GENERATOR) if cpu_of is not None else None
        sent = self._login_load(settings, rate, seconds, out)
        shares = cpu.stop() if cpu is not None else None
        logins = [(t, int(a)) for t, a in
                  (line.split("\t") for line in out.read_text().splitlines())]
        hops: dict[str, list[int]] = {"origin_to_worker": [], "worker_to_edge": []}
        lags = asyncio.run(self._applied_times(settings, logins, hops))
        result: dict[str, Any] = {
            "load": sent, "edges": {r: latency_summary(v) for r, v in lags.items()},
            "all": latency_summary([x for v in lags.values() for x in v]),
            "hops": {hop: latency_summary(v) for hop, v in hops.items()}}
        if shares is not None:
            result["cpu_share_of_one_core"] = shares
        return result

    def bench_cluster(self) -> dict[str, Any]:
        """Positioning latency with the topics on three nodes (RF 3, min ISR 2, acks=all
        waiting for two replicas) next to one node, at 100 logins/s and at 1 login/s (the
        quiet path), in alternating rounds.

        Brokers are measured warm, as a deployment runs them: each configuration
        first takes ``warm_s`` seconds of logins. Only the measured
        configuration's stack runs during its round, since an idle stack beside
        it takes the CPU a replicated write waits for (decision 18).
        """
        home = self.root / "cluster-3"
        cluster = LocalCluster(self.base.replace(home=home, kafka_nodes=3,
                                                 kafka_listen=f"127.0.0.1:{free_port_run(6)}"))
        self.say("cluster: starting a 3-node KRaft cluster")
        cluster.start()
        rounds, seconds, quiet_seconds = (2, 5, 10) if self.quick else (3, 10, 30)
        warm_s = 20 if self.quick else 40
        configs = {"1 node": self.settings("one-node"),
                   "3 nodes": self.settings("three-nodes",
                                            kafka_bootstrap_servers=cluster.bootstrap_servers,
                                            **security_files(cluster.settings))}
        rates = {"100": (100, seconds), "1": (1, quiet_seconds)}
        rounds_by: dict[str, dict[str, list[dict[str, Any]]]] = {
            rate: {name: [] for name in configs} for rate in rates}
        try:
            for i in range(rounds):
                order = list(configs) if i % 2 == 0 else list(reversed(configs))
                for name in order:
                    stack = Stack(configs[name], say=lambda _: None)
                    stack.up()
                    try:
                        if i == 0:
                            self.say(f"cluster: warming up {name}, 100 logins/s for {warm_s}s")
                            self._login_load(configs[name], 100, warm_s,
                                             self.root / f"warm-{name.replace(' ', '-')}.tsv")
                        for rate, (per_s, secs) in rates.items():
                            self.say(f"cluster: round {i + 1}/{rounds}, {per_s} logins/s for "
                                     f"{secs}s, {name}")
                            rounds_by[rate][name].append(self._round(
                                configs[name], per_s, secs,
                                f"{name.replace(' ', '-')}-{rate}-{i}"))
                    finally:
                        stack.down()
        finally:
            cluster.stop()

        def median(rate: str, name: str, key: str) -> float | None:
            return median_known(r["all"].get(key) for r in rounds_by[rate][name])

        return {"rounds": rounds_by["100"], "quiet_rounds": rounds_by["1"],
                **{f"{key}_{name.replace(' ', '_')}": median("100", name, key)
                   for name in configs for key in ("p50_ms", "p99_ms")},
                **{f"quiet_{key}_{name.replace(' ', '_')}": median("1", name, key)
                   for name in configs for key in ("p50_ms", "p99_ms")}}

    def _stack_pids(self, stack: Stack) -> dict[str, int | None]:
        pids = {c.name: stack.pid(c) for c in components(stack.settings)}
        if self.broker is not None:
            pids["broker"] = self.broker.status().pid
        return pids

    def _login_load(self, settings: Settings, rate: int, seconds: float, out: Path) -> dict[str, Any]:
        """Open-loop logins from a separate process; returns its summary."""
        load = subprocess.run(
            [sys.executable, "-m", "loadtest.bench.login_load", "--port", str(settings.origin_port),
             "--rate", str(rate), "--seconds", str(seconds), "--out", str(out)],
            capture_output=True, text=True, timeout=seconds * 10 + 60)
        if load.returncode != 0:
            raise RuntimeError(f"login load failed: {load.stderr[-2000:]}")
        return json.loads(load.stdout.strip().splitlines()[-1])

    def _throughput(self, settings: Settings, count: int) -> dict[str, Any]:
        eu = f"http://127.0.0.1:{settings.edge_ports['eu']}/readyz"
        before = httpx.get(eu).json()["applied_since_start"]
        started = time.perf_counter()
        summary = asyncio.run(produce(settings, count, 0, progress=False))
        produced = time.perf_counter() - started
        wait_until(lambda: httpx.get(eu).json()["applied_since_start"] >= before + count, 600,
                   "every offer to reach the edge", interval_s=0.05)
        elapsed = time.perf_counter() - started
        return {"logins": count, "failed": summary.failed, "produce_seconds": produced,
                "seconds_to_last_offer_at_edge": elapsed, "offers_per_s": count / elapsed}

    # -- the worker alone ---------------------------------------------------------------
    def bench_worker(self) -> dict[str, Any]:
        """Logins/s one worker turns into acknowledged offers, with nothing else running, and
        the Faust floor on the same logins, in alternating rounds (worker first, then floor
        first, ...); the figure is the median of the rounds' ratios.

        The logins are on a topic of the round's own before either starts, so
        no producer, origin or edge shares the cores; the worker's clock runs
        from its first offer to its last (start-up and joining the group are
        not throughput), the floor's from its first event to its last.
        """
        count = 10_000 if self.quick else 40_000
        rounds = 3
        results = []
        for i in range(rounds):
            settings = self.settings(f"worker-{i}")
            asyncio.run(ensure_topics(settings))
            asyncio.run(produce(settings, count, 0, progress=False))
            first = "worker" if i % 2 == 0 else "floor"
            self.say(f"worker: round {i + 1}/{rounds}, {count:,} logins waiting; {first} first")
            if first == "worker":
                worker = self.worker_alone(settings, count)
                floor = self.faust_floor(settings, count)
            else:
                floor = self.faust_floor(settings, count)
                worker = self.worker_alone(settings, count)
            rate = worker["logins_per_s"]
            results.append({**worker, "faust_floor": floor,
                            "ratio_to_floor": rate / floor["events_per_s"]
                            if rate and floor["events_per_s"] else None})

        return {"logins": count, "rounds": results,
                "logins_per_s": median_known(r["logins_per_s"] for r in results),
                "faust_floor": {"events_per_s": median_known(
                    r["faust_floor"]["events_per_s"] for r in results)},
                "ratio_to_floor": median_known(r["ratio_to_floor"] for r in results)}

    def worker_alone(self, settings: Settings, count: int) -> dict[str, Any]:
        """One worker on ``count`` logins already on the topic: its rate from first to last offer."""
        stack = Stack(settings, say=lambda _: None)
        worker = worker_component(settings)
        stack.run_component(worker)
        try:
            seen, seconds = asyncio.run(_time_offers(settings, count, timeout_s=600))
        finally:
            stack.stop_component(worker)
        return {"timed_offers": count - seen, "seconds": seconds,
                "logins_per_s": (count - seen) / seconds if seconds else None}

    def faust_floor(self, settings: Settings, count: int, mode: str = "full") -> dict[str, Any]:
        """The Faust floor (loadtest/bench/faust_floor.py, ``mode``) on ``count`` logins."""
        settings.home.mkdir(parents=True, exist_ok=True)  # the floor may run before the worker
        out = settings.home / "faust-floor.json"
        env = {**os.environ, **settings.to_env(), "FLOOR_MODE": mode,
               "FLOOR_BOOTSTRAP": settings.bootstrap_servers,
               "FLOOR_TOPIC": settings.logins_topic, "FLOOR_COUNT": str(count),
               "FLOOR_DATA_DIR": str(settings.home / "faust-floor"),
               "FLOOR_PARTITIONS": str(settings.partitions), "FLOOR_OUT": str(out)}
        run = subprocess.run([sys.executable, "-m", "loadtest.bench.faust_floor", "worker",
                              "-l", "warn", "--without-web"],
                             env=env, capture_output=True, text=True, timeout=600)
        if not out.exists():
            raise RuntimeError(f"the Faust floor did not finish ({run.returncode}): "
                               f"{(run.stdout + run.stderr)[-2000:]}")
        return json.loads(out.read_text())

    # -- all of it ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every part in turn, then the report: ``summary``, ``goals`` and each part's results.

        Raises:
            WrkMissing: wrk is not installed (checked before anything starts).
        """
        wrk.require()
        self.start_broker()
        try:
            edge = self.bench_edge()
            origin = self.bench_origin()
            worker = self.bench_worker()
            with self.fresh_broker("pipeline-broker"):
                pipeline = self.bench_pipeline()
            cluster = self.bench_cluster()
        finally:
            self.stop_broker()
        summary = summarize(Parts(edge=edge, origin=origin, worker=worker, pipeline=pipeline,
                                  cluster=cluster, local_broker=self.broker is not None))
        return {
            "summary": summary,
            "goals": judge(summary),
            "quick": self.quick,
            "notes": ["edge offers are one template offer under many signed tickets"]
            + (["--quick: 200k offers instead of 1M, shorter runs, only the 100 and 1000/s rates"]
               if self.quick else []),
            "machine": {"cpus": _cpus(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "edge": edge, "origin": origin, "worker": worker, "pipeline": pipeline,
            "cluster": cluster,
        }


async def _get_retrying(http: httpx.AsyncClient, url: str, params: dict[str, Any],
                        attempts: int = 3) -> httpx.Response:
    """GET, again on a dropped connection: a pooled keep-alive connection the server
    closed just then fails the request (seen once in a run), and the lookup is safe
    to repeat."""
    for attempt in range(attempts):
        try:
            return await http.get(url, params=params)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


async def _time_offers(settings: Settings, count: int, timeout_s: float) -> tuple[int, float]:
    """Watch the offers topic's end offsets: (offers already there at the first look that
    found any, seconds from that look until ``count`` offers are there)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.offers_topic, p) for p in range(settings.partitions)]
        first: tuple[int, float] | None = None

        async def all_there() -> tuple[int, float] | None:
            nonlocal first
            total = sum((await consumer.end_offsets(tps)).values())
            now = time.perf_counter()
            if total and first is None:
                first = (total, now)
            return (first[0], now - first[1]) if first is not None and total >= count else None

        return await wait_until_async(all_there, timeout_s, f"the worker to produce {count} offers")
    finally:
        await consumer.stop()


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _wait_json(readyz: str, timeout: float) -> float:
    """Seconds until the edge reports every stored offer as served JSON."""
    started = time.monotonic()
    wait_until(lambda: httpx.get(readyz, timeout=5).json().get("all_served_as_json"), timeout,
               "the edge to serve every stored offer as JSON", interval_s=0.2)
    return time.monotonic() - started


def _wait_http(url: str, timeout: float = 30) -> None:
    def answers() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout, f"{url} to answer 200")


def write(report: dict[str, Any], home: Path) -> Path:
    out_dir = home / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    text = json.dumps(report, indent=2, default=str)
    path.write_text(text)
    (out_dir / "bench-latest.json").write_text(text)
    return path
