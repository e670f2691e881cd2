"""The edge node's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class EdgeMetrics:
    def __init__(self, region: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"region": region}
        self.applied = Counter("edge_records_applied_total",
                               "Records of the offers topic applied since start", ["region"],
                               registry=self.registry).labels(**labels)
        self.undecodable = Counter("edge_records_undecodable_total",
                                   "Records skipped because they could not be decoded",
                                   ["region"], registry=self.registry).labels(**labels)
        self.refused = Counter("edge_records_refused_total",
                               "Records skipped because they are not to be trusted: unsigned, "
                               "forged, signed by an untrusted key, malformed signature, or "
                               "older than what is held (stale)", ["region", "reason"],
                               registry=self.registry)
        self.swept = Counter("edge_offers_expired_total", "Expired offers swept out", ["region"],
                             registry=self.registry).labels(**labels)
        self.lag = Gauge("edge_partition_lag", "High watermark minus next offset",
                         ["region", "partition"],
                         registry=self.registry)
        self.lookup_seconds = Histogram("edge_lookup_seconds", "Time to answer an offer lookup",
                                        ["region", "outcome"], buckets=LATENCY_BUCKETS,
                                        registry=self.registry)
        self.positioning_seconds = Histogram(
            "edge_positioning_seconds", "Login accepted at the origin to offer applied here",
            ["region"], buckets=LATENCY_BUCKETS, registry=self.registry).labels(**labels)
        self.waiters = Gauge("edge_open_waiters", "Requests waiting for an offer", ["region"],
                             registry=self.registry).labels(**labels)
        self.stored = Gauge("edge_offers_stored", "Offers held (RocksDB estimate)", ["region"],
                            registry=self.registry).labels(**labels)
        self.region = region

    def track_waiters(self, count: Callable[[], int]) -> None:
        self.waiters.set_function(count)

    def track_stored(self, count: Callable[[], int]) -> None:
        self.stored.set_function(count)
