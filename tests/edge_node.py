"""Test helper: one edge node as a real process, with its URL, data and metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from devstack.ports import free_port
from runtime.settings import Settings
from tests.helpers import Component


def _served(snapshot: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """What a node serves for each ticket, whichever form it stores it in."""
    from edge.render import avro_to_json

    return {k: (avro_to_json(v[1:]) if v[:1] == b"A" else v[1:]) for k, v in snapshot.items()}


class Edge:
    def __init__(self, settings: Settings, region: str, root: Path) -> None:
        self.region = region
        self.port = free_port()
        self.data_dir = root / f"edge-{region}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.root = root
        self.component = self._component()

    def _component(self) -> Component:
        return Component(f"edge-{self.region}", ["edge", "--region", self.region, "--port",
                                                 str(self.port), "--data-dir", str(self.data_dir)],
                         self.settings, self.root / "logs")

    def start(self, ready: bool = True) -> Edge:
        self.component = self._component().start()
        self.component.wait_http_ok(f"{self.url}/healthz", timeout=30)
        if ready:
            self.component.wait_http_ok(f"{self.url}/readyz", timeout=60)
        return self

    def readyz(self) -> dict:
        return httpx.get(f"{self.url}/readyz", timeout=5).json()

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"metric {name} not found")
