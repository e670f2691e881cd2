"""`positioning up` / `down`: the whole local stack as supervised background processes.

Each component runs as `positioning <command>` in its own session, with its
log in ``<home>/logs/<name>.log`` and its pid in ``<home>/run/<name>.pid``.
``up`` starts only what is not running (so it also brings a crashed
component back, with its state) and returns once every component is healthy
or ready; if one is not, it names it and shows the end of its log.

The home records what was started, beside each pid file: the command line
and the address (``<home>/run/<name>.json``). ``down`` stops what the record
names, whatever the current environment says (other edge ports, another
number of workers), the Kafka node(s) last, and checks the ports are free.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack import front_door
from devstack.broker.cluster import LocalCluster
from devstack.ports import free_port, port_in_use
from devstack.processes import running_pid, tail, terminate, write_pid
from pipeline.readiness import WEB_HOST, ready_url
from runtime.acls import ensure_principals
from runtime.settings import Settings, env_var
from runtime.topics import ensure_topics
from runtime.waiting import TimedOut, wait_until


class StackError(RuntimeError):
    """A component did not come up; the message names it and quotes its log."""


@dataclass
class Component:
    """One `positioning <command>` process: its name, arguments, and how to know it is up."""

    name: str
    args: list[str]
    ready_url: str | None = None          # HTTP 200 here means ready; None: started is enough
    port: int | None = None               # must be free before it starts
    env: dict[str, str] = field(default_factory=dict)
    ca_file: Path | None = None           # the CA an https ready URL's certificate chains to


def worker_name(settings: Settings, index: int) -> str:
    """``worker`` when the stack has one worker, else ``worker-<index>`` (1-based)."""
    return "worker" if settings.workers == 1 else f"worker-{index}"


def worker_component(settings: Settings, index: int = 1) -> Component:
    """Worker ``index`` (1..``workers``), with its readiness page (pipeline/readiness.py).

    Its web port is ``worker_web_port + index - 1``; settings whose
    ``worker_web_port`` is 0 (no web server) get a free port chosen here,
    so the page's address is known before the worker starts. Either way the
    port goes in the worker's environment. Several workers share the
    consumer group (``worker_id``) and each gets a RocksDB directory of its
    own, ``worker-<index>`` under ``worker_data_dir`` or the home (RocksDB
    locks it); a lone worker keeps ``worker_data_dir`` or ``<home>/worker``.
    """
    port = settings.worker_web_port + index - 1 if settings.worker_web_port else free_port()
    name = worker_name(settings, index)
    env = {env_var("worker_web_port"): str(port)}
    if settings.workers > 1:
        env[env_var("worker_data_dir")] = str((settings.worker_data_dir or settings.home) / name)
    return Component(name, ["worker"], ready_url=ready_url(port), port=port, env=env)


def worker_components(settings: Settings) -> list[Component]:
    """The ``workers`` worker processes of the stack, worker-1 first."""
    return [worker_component(settings, i) for i in range(1, settings.workers + 1)]


FRONT_DOOR = "front-door"


def front_door_component(settings: Settings) -> Component:
    """The front door (devstack/front_door.py): ready once it reaches the origin and an edge
    of every region."""
    return Component(FRONT_DOOR, [FRONT_DOOR], ready_url=front_door.ready_url(settings),
                     port=settings.front_door_host_port[1], ca_file=front_door.client_ca(settings))


def components(settings: Settings) -> list[Component]:
    """The stack's processes in start order: workers, origin, edges, the front door last.

    With the front door on, the origin trusts the address the front door
    connects from (its ``X-Forwarded-For``; devstack/front_door.py). Unless
    set to ``any``, the stack's origin lets clients on this machine's
    loopback choose a login's ``ip`` (``login_ip_from_body=local``), which the
    story and the web client use to play users of other countries; nobody
    else may. (A real deployment runs its origin itself, with ``never``.)
    """
    host = settings.origin_host
    env = front_door.origin_env(settings) if settings.front_door else {}
    if settings.login_ip_from_body == "never":
        env[env_var("login_ip_from_body")] = "local"
    out = [
        *worker_components(settings),
        Component("origin", ["origin"], ready_url=f"http://{host}:{settings.origin_port}/readyz",
                  port=settings.origin_port, env=env),
    ]
    for region, port in settings.edge_ports.items():
        out.append(Component(f"edge-{region}", ["edge", "--region", region, "--port", str(port)],
                             ready_url=f"http://{settings.edge_host}:{port}/readyz", port=port))
    if settings.front_door:
        out.append(front_door_component(settings))
    return out


def is_worker(component: Component) -> bool:
    """Whether the component is one of the stack's workers."""
    return component.args == ["worker"]


class Stack:
    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.run_dir = settings.home / "run"
        self.logs = settings.logs_dir

    def host_of(self, component: Component) -> str:
        """Where the component listens: edges on ``edge_host``, the worker's web server on
        ``WEB_HOST``, the origin on ``origin_host``, the front door on its listen host."""
        if component.name.startswith("edge-"):
            return self.settings.edge_host
        if component.name == FRONT_DOOR:
            return front_door.connectable(self.settings.front_door_host_port[0])
        return WEB_HOST if is_worker(component) else self.settings.origin_host

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _record_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def pid(self, component: Component) -> int | None:
        """The component's pid if it is running (a stale pid file counts as not)."""
        return running_pid(self._pid_file(component.name), ["cli.main", *component.args])

    def _record(self, component: Component) -> None:
        """Write down what was started, so ``down`` finds it under any environment."""
        self._record_file(component.name).write_text(json.dumps(
            {"args": component.args, "host": self.host_of(component), "port": component.port}))

    def recorded(self) -> list[tuple[Component, str]]:
        """What ``up`` started in this home, by its record, with the host it listens on;
        a record that cannot be read is skipped (its component is then found by the
        current settings, as before records existed)."""
        out = []
        for path in sorted(self.run_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                component = Component(path.stem, [str(a) for a in record["args"]],
                                      port=record["port"])
                out.append((component, str(record["host"])))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def _start(self, component: Component) -> subprocess.Popen[bytes]:
        if component.port is not None and port_in_use(self.host_of(component), component.port):
            raise StackError(f"{component.name}: port {component.port} is already in use by "
                             "another program")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{component.name}.log"
        env = {**os.environ, **self.settings.to_env(), **component.env}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", *component.args],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        write_pid(self._pid_file(component.name), proc.pid)
        self._record(component)
        return proc

    def _wait_ready(self, component: Component, proc: subprocess.Popen[bytes] | None,
                    timeout: float) -> None:
        """Wait until the component's ready URL answers 200 (runtime/waiting.py).

        Raises:
            StackError: the process exited, or was not ready within ``timeout`` seconds;
                the message quotes the end of its log.
        """
        log_path = self.logs / f"{component.name}.log"

        def ready() -> bool:
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{component.name} exited with code {proc.returncode}; "
                                 f"end of {log_path}:\n{tail(log_path)}")
            if component.ready_url is None:
                return True
            verify: str | bool = str(component.ca_file) if component.ca_file else True
            try:
                return httpx.get(component.ready_url, timeout=1,
                                 verify=verify).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout, f"{component.name} to be ready")
        except TimedOut:
            raise StackError(f"{component.name} was not ready within {timeout:.0f}s; "
                             f"end of {log_path}:\n{tail(log_path)}") from None

    def up(self, timeout: float = 120) -> None:
        """Start what is not running and wait until everything is ready.

        Raises:
            StackError: a component did not come up; or, before anything starts,
                the front door is on and HAProxy is not installed, one Kafka user is
                set for every component, or components an earlier ``up`` started with
                other settings still run.
        """
        if self.settings.secured and (self.settings.kafka_username is not None
                                      or self.settings.kafka_password is not None):
            # The components run as five roles; one principal for all would hold
            # every role's rights, and each component's own check would refuse it.
            raise StackError(
                f"{env_var('kafka_username')} / {env_var('kafka_password')} name one Kafka "
                f"user, and a stack runs a user per role: unset them, and give the roles' "
                f"users in {env_var('kafka_principals')} with their passwords in "
                f"{env_var('kafka_credentials_file')}")
        if self.settings.front_door:
            try:
                front_door.haproxy_binary()
            except front_door.FrontDoorError as exc:
                raise StackError(str(exc)) from None
        self._refuse_other_shapes()
        if not self.settings.uses_external_kafka:
            cluster = LocalCluster(self.settings)
            _, started = cluster.start()
            self.say(f"kafka      {'started' if started else 'running'} on "
                     f"{cluster.bootstrap_servers}")
        else:
            self.say(f"kafka      external: {self.settings.bootstrap_servers}")
        asyncio.run(ensure_topics(self.settings))
        self.say("topics     ok")
        if self.settings.secured:
            ensure_principals(self.settings)
            self.say("acls       ok: each role's principal has exactly its role's rights")
        starting = []
        for component in components(self.settings):
            pid = self.pid(component)
            if pid is not None:
                self.say(f"{component.name:<10} running (pid {pid})")
                continue
            starting.append((component, self._start(component)))
        for component, proc in starting:
            self._wait_ready(component, proc, timeout)
            where = f" on :{component.port}" if component.port else ""
            self.say(f"{component.name:<10} started (pid {proc.pid}){where}, log "
                     f"{self.logs / (component.name + '.log')}")
        self._wait_workers_settled(starting, timeout)

    def _refuse_other_shapes(self) -> None:
        """Refuse to start over components an earlier ``up`` started with other arguments
        (an edge on another port, another number of workers) that still run: their pid
        files would be overwritten and the processes orphaned.

        Raises:
            StackError: naming each such component and the fix.
        """
        wanted = {c.name: c.args for c in components(self.settings)}
        other = [f"{c.name} (positioning {' '.join(c.args)})" for c, _ in self.recorded()
                 if wanted.get(c.name) != c.args and self.pid(c) is not None]
        if other:
            raise StackError(
                f"this home runs components that an earlier `up` started with other settings: "
                f"{', '.join(other)}; stop them with `positioning down` first")

    def _wait_workers_settled(self, starting: list[tuple[Component, subprocess.Popen[bytes]]],
                              timeout: float) -> None:
        """Wait until every worker says ready again after the last one joined the group.

        A worker that joins makes the others rebalance; each was ready
        before, so its page is asked once more. Workers already running are
        asked only when their port is known (``worker_web_port`` set).

        Raises:
            StackError: as ``_wait_ready``.
        """
        if not any(is_worker(c) for c, _ in starting):
            return
        procs = {c.name: p for c, p in starting}
        known = {c.name: c for c, _ in starting}
        if self.settings.worker_web_port:
            known.update({c.name: c for c in worker_components(self.settings)})
        for component in known.values():
            if is_worker(component):
                self._wait_ready(component, procs.get(component.name), timeout)

    def run_component(self, component: Component, timeout: float = 120) -> int:
        """Start one component (not part of the usual set) and wait until it is ready."""
        proc = self._start(component)
        self._wait_ready(component, proc, timeout)
        return proc.pid

    def stop_component(self, component: Component, timeout: float = 20) -> None:
        pid = self.pid(component)
        self._forget(component.name)
        if pid is not None:
            terminate(pid, timeout)

    def _forget(self, name: str) -> None:
        self._pid_file(name).unlink(missing_ok=True)
        self._record_file(name).unlink(missing_ok=True)

    def _to_stop(self) -> list[tuple[Component, str]]:
        """What ``down`` stops, in stop order (the front door first, the workers last): each
        recorded component as it was started, then any of the current settings' that has
        no record."""
        recorded = self.recorded()
        names = {c.name for c, _ in recorded}
        current = [(c, self.host_of(c)) for c in components(self.settings) if c.name not in names]

        def order(item: tuple[Component, str]) -> tuple[int, str]:
            name = item[0].name
            rank = 0 if name == FRONT_DOOR else 1 if name.startswith("edge-") else (
                2 if name == "origin" else 3)
            return rank, name

        return sorted([*recorded, *current], key=order)

    def down(self, timeout: float = 20) -> None:
        """Stop every component this home started, then the local Kafka node(s).

        Raises:
            StackError: a component or a port is still there afterwards; the
                message names each.
            Unkillable: a process survived SIGKILL (from ``terminate``).
        """
        targets = self._to_stop()
        for component, _ in targets:
            pid = self.pid(component)
            if pid is None:
                self._forget(component.name)
                continue
            terminate(pid, timeout)
            self._forget(component.name)
            self.say(f"{component.name:<10} stopped")
        if not self.settings.uses_external_kafka:
            if LocalCluster(self.settings).stop():
                self.say("kafka      stopped")
        busy = [f"{c.name} ({host}:{c.port})" for c, host in targets
                if c.port is not None and port_in_use(host, c.port)]
        if busy:
            raise StackError(f"ports still in use after down: {', '.join(busy)}")
