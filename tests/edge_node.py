"""Test helpers: one edge node as a real process, and reading an edge store whole."""

from __future__ import annotations

from pathlib import Path

import httpx

from devstack.ports import free_edge_port
from edge import unverified
from edge.render import avro_to_json
from edge.store import _HEADER as ENTRY_HEADER
from edge.store import AVRO, FIRST_OFFER_KEY, SIGNED, OfferStore
from runtime.settings import Settings
from tests.helpers import Component


def stored_entries(store: OfferStore) -> dict[bytes, bytes]:
    """ticket id → format byte + payload for every stored offer (reads the whole store)."""
    out = {}
    it = store._db.iter()
    it.seek(FIRST_OFFER_KEY)
    while it.valid():
        out[it.key()] = it.value()[ENTRY_HEADER.size - 1:]
        it.next()
    return out


def stored_ticket_ids(store: OfferStore) -> list[bytes]:
    """Every stored ticket id, in key order (reads the whole store)."""
    return list(stored_entries(store))


def block_cache_bytes(store: OfferStore) -> int:
    """The block cache's capacity as RocksDB reports it (the tuning actually in effect)."""
    return int(store._db.property_int_value("rocksdb.block-cache-capacity") or 0)


def served_offers(store: OfferStore) -> dict[bytes, bytes]:
    """What a node serves for each ticket, whichever form it stores it in (an offer stored
    unchecked is taken as checked: the tests that use this write genuine offers)."""
    def served(v: bytes) -> bytes:
        if v[:1] == SIGNED:
            return avro_to_json(unverified.unpack(v[1:]).value)
        return avro_to_json(v[1:]) if v[:1] == AVRO else v[1:]
    return {k: served(v) for k, v in stored_entries(store).items()}


class Edge:
    def __init__(self, settings: Settings, region: str, root: Path) -> None:
        self.region = region
        self.port = free_edge_port()
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

    @property
    def metrics_url(self) -> str:
        """``/metrics``, on the node's operators' listener."""
        return self.settings.edge_metrics_url(self.port)

    def metric(self, name: str) -> float:
        text = httpx.get(self.metrics_url, timeout=5).text
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"metric {name} not found")
