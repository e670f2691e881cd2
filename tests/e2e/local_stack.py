"""A stack of a test's own, run through the `positioning` command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from devstack.processes import read_pid_record
from runtime.settings import Settings


class LocalStack:
    """`positioning up`/`down` and the other commands in the settings' home, and where
    the stack's components answer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = {**os.environ, **settings.to_env()}

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def pids(self) -> dict[str, int]:
        run = self.settings.home / "run"
        return {p.stem: record.pid for p in run.glob("*.pid")
                if (record := read_pid_record(p)) is not None}

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.settings.origin_port}"

    def edge(self, region: str) -> str:
        return f"http://127.0.0.1:{self.settings.edge_ports[region]}"


@contextmanager
def running(stack: LocalStack) -> Iterator[LocalStack]:
    """The stack up for the block (`positioning up` must succeed), down after it."""
    up = stack.cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield stack
    finally:
        stack.cli("down")
