"""The one place configuration comes from: environment variables with sane defaults.

Every component receives a ``Settings`` instance; nothing reads ``os.environ``
anywhere else. docs/configuration.md documents ``ENV_VARS`` below (a test checks it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _split_hostport(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        return value, default_port
    return host, int(port)


@dataclass(frozen=True)
class Settings:
    """All knobs of the system, read once from the environment."""

    # Where local state lives: broker data, edge databases, logs, reports.
    home: Path = Path(".positioning")
    # Kafka: when set, components use this cluster and `up` starts no broker.
    kafka_bootstrap_servers: str | None = None
    # The local development broker (`positioning kafka start`).
    kafka_listen: str = "127.0.0.1:9092"
    kafka_controller_port: int | None = None  # default: listen port + 1
    kafka_heap: str = "512m"
    kafka_home: Path | None = None  # an unpacked Kafka distribution to use instead of Maven
    kafka_start_timeout_s: float = 90.0
    # Topics.
    logins_topic: str = "logins"
    offers_topic: str = "offers"
    dlq_topic: str = "logins.dlq"
    partitions: int = 6
    replication_factor: int = 1
    # Tickets: "kid:secret[,kid:secret...]"; the first key signs, all verify.
    # Unset: the local home's own random key (runtime/ticket_secret.py).
    # Never in reprs or logs.
    ticket_secret: str | None = field(default=None, repr=False)
    ticket_ttl_s: int = 900
    # How far in the future a ticket's issue time may be (the clocks of
    # origin and edge differ); tickets further ahead are refused.
    ticket_clock_skew_s: float = 5.0
    # Origin.
    origin_host: str = "127.0.0.1"
    origin_port: int = 8000
    trusted_proxies: tuple[str, ...] = ()
    login_timeout_s: float = 5.0
    # The login producer waits this long for other logins to share a produce
    # request. With the origin alone at 1,000 logins/s, 5 ms instead of 1 ms cut
    # its CPU by ~15 % and the broker's by ~20 %, but each login's 202 comes up
    # to 5 ms later, and with the whole stack on 2 cores no gain showed.
    origin_linger_ms: int = 1
    # Offer engine.
    model_latency_ms: float = 0.0
    # Worker.
    worker_id: str = "positioning-worker"
    # Each worker process needs a state directory of its own (RocksDB locks it).
    worker_data_dir: Path | None = None  # default: <home>/worker
    worker_web_port: int = 6066
    expiry_sweep_s: float = 10.0
    worker_concurrency: int = 64
    # The worker reports itself stuck (not ready, /status/ 503) once a record
    # has waited this long for the broker's ack; it keeps retrying regardless.
    worker_stuck_after_s: float = 10.0
    # Finished logins waiting this long for a commit mean the worker's Kafka
    # consumer is stuck: the worker replaces itself.
    worker_commit_stall_s: float = 60.0
    # Kafka consumers (worker and edges): the broker answers a fetch once this many
    # bytes are ready or this many ms have passed. A busy topic then arrives in
    # batches of a few ms each instead of one or two records per fetch, which is
    # what keeps the worker and edges from drowning in fetch requests at 1,000
    # logins/s; at low rates a record waits at most the fetch wait per hop.
    fetch_wait_ms: int = 5
    fetch_min_bytes: int = 64 * 1024
    fetch_idle_wait_ms: int = 500  # after an empty fetch: ask for one byte, wait up to this
    # Edge.
    edge_host: str = "127.0.0.1"
    edges: tuple[str, ...] = ("eu=8100", "us=8101")  # region=port, for `up` and the story
    edge_max_wait_s: float = 30.0
    edge_max_waiters: int = 10_000
    edge_ready_lag: int = 0
    edge_sse_lifetime_s: float = 30.0
    # While catching up, writes skip RocksDB's log; a flush every this many records
    # bounds what a crash mid-bootstrap has to read again.
    edge_catch_up_flush_records: int = 100_000
    # RocksDB's block cache for the edge's offers: hot lookups skip reading and
    # decompressing blocks.
    edge_block_cache_mb: int = 256
    cors_origins: tuple[str, ...] = ("*",)
    # HTTP bounds, origin and edges (runtime/http_protocol.py): a request's
    # head at most this many bytes and header fields (else 431), the head
    # complete this long after its first byte and the body this long after the
    # head (else 408); uvicorn's keep-alive time-out closes idle connections.
    http_max_head_bytes: int = 16 * 1024
    http_max_headers: int = 64
    http_head_timeout_s: float = 10.0
    http_body_timeout_s: float = 10.0

    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect: the configured cluster or the local broker."""
        return self.kafka_bootstrap_servers or self.kafka_listen

    @property
    def uses_external_kafka(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        return _split_hostport(self.kafka_listen, 9092)

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def edge_ports(self) -> dict[str, int]:
        """region -> port of the local edge nodes."""
        out = {}
        for entry in self.edges:
            region, _, port = entry.partition("=")
            out[region] = int(port)
        return out

    def edge_data_dir(self, region: str) -> Path:
        return self.home / "edge" / region

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (used by tests and `up`)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (var, parse) in ENV_VARS.items():
            raw = env.get(var)
            if raw is not None and raw != "":
                try:
                    values[name] = parse(raw)
                except ValueError as exc:
                    raise ValueError(f"{var}={raw!r} is not valid: {exc}") from exc
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Environment variables that reproduce these settings in a child process."""
        out: dict[str, str] = {}
        for name, (var, _) in ENV_VARS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                out[var] = ",".join(value)
            else:
                out[var] = str(value)
        return out


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


# field name -> (environment variable, parser). Documented in docs/configuration.md.
ENV_VARS: dict[str, tuple[str, Any]] = {
    "home": ("POSITIONING_HOME", Path),
    "kafka_bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", str),
    "kafka_listen": ("POSITIONING_KAFKA_LISTEN", str),
    "kafka_controller_port": ("POSITIONING_KAFKA_CONTROLLER_PORT", _positive_int),
    "kafka_heap": ("POSITIONING_KAFKA_HEAP", str),
    "kafka_home": ("KAFKA_HOME", Path),
    "kafka_start_timeout_s": ("POSITIONING_KAFKA_START_TIMEOUT", _non_negative_float),
    "logins_topic": ("POSITIONING_LOGINS_TOPIC", str),
    "offers_topic": ("POSITIONING_OFFERS_TOPIC", str),
    "dlq_topic": ("POSITIONING_DLQ_TOPIC", str),
    "partitions": ("POSITIONING_PARTITIONS", _positive_int),
    "replication_factor": ("POSITIONING_REPLICATION_FACTOR", _positive_int),
    "ticket_secret": ("POSITIONING_TICKET_SECRET", str),
    "ticket_ttl_s": ("POSITIONING_TICKET_TTL", _positive_int),
    "ticket_clock_skew_s": ("POSITIONING_TICKET_CLOCK_SKEW", _non_negative_float),
    "origin_host": ("POSITIONING_ORIGIN_HOST", str),
    "origin_port": ("POSITIONING_ORIGIN_PORT", _positive_int),
    "trusted_proxies": ("POSITIONING_TRUSTED_PROXIES", _csv),
    "login_timeout_s": ("POSITIONING_LOGIN_TIMEOUT", _non_negative_float),
    "model_latency_ms": ("POSITIONING_MODEL_LATENCY_MS", _non_negative_float),
    "worker_id": ("POSITIONING_WORKER_ID", str),
    "worker_data_dir": ("POSITIONING_WORKER_DATA_DIR", Path),
    "worker_web_port": ("POSITIONING_WORKER_WEB_PORT", int),
    "expiry_sweep_s": ("POSITIONING_EXPIRY_SWEEP", _non_negative_float),
    "worker_concurrency": ("POSITIONING_WORKER_CONCURRENCY", _positive_int),
    "worker_stuck_after_s": ("POSITIONING_WORKER_STUCK_AFTER", _non_negative_float),
    "worker_commit_stall_s": ("POSITIONING_WORKER_COMMIT_STALL", _non_negative_float),
    "origin_linger_ms": ("POSITIONING_ORIGIN_LINGER_MS", _non_negative_int),
    "fetch_wait_ms": ("POSITIONING_FETCH_WAIT_MS", _positive_int),
    "fetch_min_bytes": ("POSITIONING_FETCH_MIN_BYTES", _positive_int),
    "fetch_idle_wait_ms": ("POSITIONING_FETCH_IDLE_WAIT_MS", _non_negative_int),
    "edge_host": ("POSITIONING_EDGE_HOST", str),
    "edges": ("POSITIONING_EDGES", _csv),
    "edge_max_wait_s": ("POSITIONING_EDGE_MAX_WAIT", _non_negative_float),
    "edge_max_waiters": ("POSITIONING_EDGE_MAX_WAITERS", _positive_int),
    "edge_ready_lag": ("POSITIONING_EDGE_READY_LAG", int),
    "edge_sse_lifetime_s": ("POSITIONING_EDGE_SSE_LIFETIME", _non_negative_float),
    "edge_catch_up_flush_records": ("POSITIONING_EDGE_CATCH_UP_FLUSH_RECORDS", _positive_int),
    "edge_block_cache_mb": ("POSITIONING_EDGE_BLOCK_CACHE_MB", _positive_int),
    "cors_origins": ("POSITIONING_CORS_ORIGINS", _csv),
    "http_max_head_bytes": ("POSITIONING_HTTP_MAX_HEAD_BYTES", _positive_int),
    "http_max_headers": ("POSITIONING_HTTP_MAX_HEADERS", _positive_int),
    "http_head_timeout_s": ("POSITIONING_HTTP_HEAD_TIMEOUT", _non_negative_float),
    "http_body_timeout_s": ("POSITIONING_HTTP_BODY_TIMEOUT", _non_negative_float),
}
