"""`positioning up` / `down`: the whole local stack as supervised background processes.

Each component runs as `positioning <command>` in its own session, with its
log in ``<home>/logs/<name>.log`` and its pid in ``<home>/run/<name>.pid``.
``up`` starts only what is not running (so it also brings a crashed
component back, with its state) and returns once every component is healthy
or ready; if one is not, it names it and shows the end of its log. ``down``
stops everything it started, the broker last, and checks the ports are free.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.broker.local import LocalBroker
from devstack.ports import port_in_use
from devstack.processes import read_pid, runs_with, tail, terminate
from runtime.settings import Settings
from runtime.topics import ensure_topics


class StackError(RuntimeError):
    """A component did not come up; the message names it and quotes its log."""


@dataclass
class Component:
    name: str
    args: list[str]
    ready_url: str | None = None          # HTTP 200 here means ready
    ready_log_marker: str | None = None   # or this line in its log, after start
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)


def components(settings: Settings) -> list[Component]:
    host = settings.origin_host
    out = [
        Component("worker", ["worker"], ready_log_marker="Worker]: Ready"),
        Component("origin", ["origin"], ready_url=f"http://{host}:{settings.origin_port}/readyz",
                  port=settings.origin_port),
    ]
    for region, port in settings.edge_ports.items():
        out.append(Component(f"edge-{region}", ["edge", "--region", region, "--port", str(port)],
                             ready_url=f"http://{settings.edge_host}:{port}/readyz", port=port))
    return out


class Stack:
    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.say = say
        self.run_dir = settings.home / "run"
        self.logs = settings.logs_dir

    def host_of(self, component: Component) -> str:
        """Where the component listens: edges on ``edge_host``, the rest on ``origin_host``."""
        edge = component.name.startswith("edge-")
        return self.settings.edge_host if edge else self.settings.origin_host

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, component: Component) -> int | None:
        """The component's pid if it is running (a stale pid file counts as not)."""
        pid = read_pid(self._pid_file(component.name))
        if pid is None or not runs_with(pid, ["cli.main", *component.args]):
            return None
        return pid

    def _start(self, component: Component) -> tuple[subprocess.Popen[bytes], int]:
        if component.port is not None and port_in_use(self.host_of(component), component.port):
            raise StackError(f"{component.name}: port {component.port} is already in use by "
                             "another program")
        self.logs.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{component.name}.log"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        env = {**os.environ, **self.settings.to_env(), **component.env}
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", *component.args],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        self._pid_file(component.name).write_text(f"{proc.pid}\n")
        return proc, log_offset

    def _wait_ready(self, component: Component, proc: subprocess.Popen[bytes] | None,
                    log_offset: int, timeout: float) -> None:
        log_path = self.logs / f"{component.name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{component.name} exited with code {proc.returncode}; "
                                 f"end of {log_path}:\n{tail(log_path)}")
            if component.ready_url is not None:
                try:
                    if httpx.get(component.ready_url, timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            elif component.ready_log_marker is not None:
                with open(log_path, "rb") as log:
                    log.seek(log_offset)
                    if component.ready_log_marker.encode() in log.read():
                        return
            time.sleep(0.1)
        raise StackError(f"{component.name} was not ready within {timeout:.0f}s; "
                         f"end of {log_path}:\n{tail(log_path)}")

    def up(self, timeout: float = 120) -> None:
        if not self.settings.uses_external_kafka:
            broker = LocalBroker(self.settings)
            status, started = broker.start()
            self.say(f"kafka      {'started' if started else 'running'} on {status.address}")
        else:
            self.say(f"kafka      external: {self.settings.bootstrap_servers}")
        asyncio.run(ensure_topics(self.settings))
        self.say("topics     ok")
        starting = []
        for component in components(self.settings):
            pid = self.pid(component)
            if pid is not None:
                self.say(f"{component.name:<10} running (pid {pid})")
                starting.append((component, None, None))
                continue
            proc, offset = self._start(component)
            starting.append((component, proc, offset))
        for component, proc, offset in starting:
            if proc is None:
                continue
            self._wait_ready(component, proc, offset or 0, timeout)
            where = f" on :{component.port}" if component.port else ""
            self.say(f"{component.name:<10} started (pid {proc.pid}){where}, log "
                     f"{self.logs / (component.name + '.log')}")

    def run_component(self, component: Component, timeout: float = 120) -> int:
        """Start one component (not part of the usual set) and wait until it is ready."""
        proc, offset = self._start(component)
        self._wait_ready(component, proc, offset, timeout)
        return proc.pid

    def stop_component(self, component: Component, timeout: float = 20) -> None:
        pid = self.pid(component)
        self._pid_file(component.name).unlink(missing_ok=True)
        if pid is not None:
            terminate(pid, timeout)

    def down(self, timeout: float = 20) -> None:
        for component in reversed(components(self.settings)):
            pid = self.pid(component)
            self._pid_file(component.name).unlink(missing_ok=True)
            if pid is None:
                continue
            terminate(pid, timeout)
            self.say(f"{component.name:<10} stopped")
        if not self.settings.uses_external_kafka:
            if LocalBroker(self.settings).stop():
                self.say("kafka      stopped")
        busy = [c.name for c in components(self.settings)
                if c.port is not None and port_in_use(self.host_of(c), c.port)]
        if busy:
            raise StackError(f"ports still in use after down: {', '.join(busy)}")
