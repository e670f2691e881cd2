"""The origin's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LOGIN_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class OriginMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.logins = Counter("origin_logins_total", "Logins by outcome", ["outcome"],
                              registry=self.registry)
        self.login_seconds = Histogram(
            "origin_login_seconds", "Time to accept a login (Kafka ack included)",
            buckets=LOGIN_BUCKETS, registry=self.registry)
