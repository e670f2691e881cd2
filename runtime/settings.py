"""The system's configuration, declared once: the fields of ``Settings``.

Each field is one setting: its name, type (with its bounds), default and a
short description. Its environment variable is ``POSITIONING_`` plus the
name in capitals, its unit included (``ticket_ttl_s`` is
``POSITIONING_TICKET_TTL_S``); only ``KAFKA_BOOTSTRAP_SERVERS`` and
``KAFKA_HOME`` keep the names the Kafka ecosystem gives them. pydantic-settings reads the variables;
``configuration_markdown()`` renders docs/configuration.md from the same
fields (``python -m runtime.settings > docs/configuration.md``; a unit test
checks the committed file).

Every component receives a ``Settings`` instance and child processes get
theirs through ``Settings.to_env()``. Nothing else in the project reads
configuration from the environment, except:

- devstack/broker/jars.py reads ``XDG_CACHE_HOME``, the platform's
  convention for where the Kafka jars Maven fetches are cached;
- loadtest/bench/faust_floor.py runs under Faust's own command line, so the
  bench hands it its run (``FLOOR_*``) through the environment, and
  loadtest/bench/wrk.py hands wrk's Lua script ``BENCH_TICKETS``;
- Faust itself reads its own variables (``F_DATADIR``, ``F_WORKDIR`` and
  the like) in the worker and the floor;
- tests/conftest.py reads ``KAFKA_BOOTSTRAP_SERVERS`` to run the tests
  against an existing cluster.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasGenerator,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "POSITIONING_"

# Variables renamed in 0.2.0 so that every name is ``POSITIONING_`` plus the field's, its
# unit included (``_S``, ``_MS``, ``_MB``, ``_BYTES``): the old name, and the field it
# sets. Read, with a FutureWarning, while the new name is unset; removed in 0.3.0.
RENAMED_VARIABLES: dict[str, str] = {
    "POSITIONING_KAFKA_START_TIMEOUT": "kafka_start_timeout_s",
    "POSITIONING_TICKET_TTL": "ticket_ttl_s",
    "POSITIONING_TICKET_CLOCK_SKEW": "ticket_clock_skew_s",
    "POSITIONING_LOGIN_TIMEOUT": "login_timeout_s",
    "POSITIONING_EXPIRY_SWEEP": "expiry_sweep_s",
    "POSITIONING_OFFERS_TOMBSTONE_RETENTION": "offers_tombstone_retention_s",
    "POSITIONING_OFFERS_COMPACTION_LAG": "offers_compaction_lag_s",
    "POSITIONING_WORKER_STUCK_AFTER": "worker_stuck_after_s",
    "POSITIONING_WORKER_COMMIT_STALL": "worker_commit_stall_s",
    "POSITIONING_EDGE_MAX_WAIT": "edge_max_wait_s",
    "POSITIONING_EDGE_SSE_LIFETIME": "edge_sse_lifetime_s",
    "POSITIONING_HTTP_HEAD_TIMEOUT": "http_head_timeout_s",
    "POSITIONING_HTTP_BODY_TIMEOUT": "http_body_timeout_s",
    "POSITIONING_FRONT_DOOR_CHECK_INTERVAL": "front_door_check_interval_s",
    "POSITIONING_FRONT_DOOR_LOGIN_RATE_PERIOD": "front_door_login_rate_period_s",
    "POSITIONING_FRONT_DOOR_REQUEST_TIMEOUT": "front_door_request_timeout_s",
    "POSITIONING_FRONT_DOOR_CONNECT_TIMEOUT": "front_door_connect_timeout_s",
    "POSITIONING_EDGE_URL": "loadtest_edge_url",
    "POSITIONING_GAP_S": "loadtest_gap_s",
}


def _split_csv(value: object) -> object:
    """``"a, b,,c"`` -> ``("a", "b", "c")``; anything else is left to validation."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


# A list of strings, written in the environment as comma-separated values.
Csv = Annotated[tuple[str, ...], BeforeValidator(_split_csv)]

# While set, ``Settings()`` reads this mapping instead of ``os.environ`` (``from_env``).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


class _DeclaredEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading only the declared variable names.

    pydantic also matches a variable named like the field itself (``home``,
    ``partitions``) when fields may be given by name; only the documented
    names (``POSITIONING_HOME``...) configure anything here. Reads
    ``environ`` if given, else ``os.environ``; an empty value means unset.
    """

    def __init__(self, settings_cls: type[BaseSettings],
                 environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        source = dict(self.env_vars if environ is None else environ)
        for old, field_name in RENAMED_VARIABLES.items():
            new = env_var(field_name)
            if source.get(old) and not source.get(new):
                warnings.warn(f"{old} is renamed {new}; the old name is read until 0.3.0",
                              FutureWarning, stacklevel=2)
                source[new] = source[old]
        declared = {env_var(name) for name in settings_cls.model_fields}
        self.env_vars = {name: value for name, value in source.items()
                         if name in declared and value != ""}


class Settings(BaseSettings):
    """All knobs of the system. Immutable; ``replace`` makes a changed copy.

    ``Settings()`` reads the environment; keyword arguments (by field name)
    win over it. Bad values raise ``pydantic.ValidationError`` (a
    ``ValueError``) naming the variable or argument, the value and the rule.
    """

    model_config = SettingsConfigDict(
        alias_generator=AliasGenerator(validation_alias=lambda name: ENV_PREFIX + name.upper()),
        validate_by_name=True,
        validate_by_alias=True,
        case_sensitive=True,
        env_ignore_empty=True,  # VAR= means the default
        enable_decoding=False,  # lists are comma-separated (Csv), not JSON
        extra="forbid",
        frozen=True,
    )

    # -- local state and Kafka ----------------------------------------------
    home: Path = Field(
        default=Path(".positioning"),
        description="local state: broker data, worker and edge databases, logs, reports")
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="an existing Kafka cluster; when set, components use it and `up` "
                    "starts no broker")
    kafka_listen: str = Field(
        default="127.0.0.1:9092",
        description="the local development broker's address (`positioning kafka start`); "
                    "with several nodes, node 1's: node i listens on this port + 2·(i−1)")
    kafka_nodes: PositiveInt = Field(
        default=1,
        description="nodes of the local KRaft cluster (`positioning kafka start`), each "
                    "broker and controller; with more than one, `bootstrap_servers` lists "
                    "them all")
    kafka_controller_port: PositiveInt | None = Field(
        default=None,
        description="the local broker's KRaft controller port (node 1's; node i's is this "
                    "+ 2·(i−1)); unset: the node's listen port + 1")
    kafka_heap: str | None = Field(
        default=None,
        description="the JVM heap of each local Kafka node; unset: `512m` for one node, "
                    "`384m` each for several")
    kafka_server_properties: Csv = Field(
        default=(),
        description="comma-separated `key=value` lines added to each local Kafka node's "
                    "`server.properties`, replacing the project's value for that key (e.g. "
                    "`num.io.threads=2,num.network.threads=1`)")
    kafka_home: Path | None = Field(
        default=None, validation_alias="KAFKA_HOME",
        description="an unpacked Kafka distribution whose `libs/` the local broker runs "
                    "from; unset: the jars devstack/broker/pom.xml pins, fetched with Maven")
    kafka_start_timeout_s: NonNegativeFloat = Field(
        default=90.0,
        description="seconds `kafka start` waits for the local broker")

    # -- the Kafka plane's security (runtime/kafka_security.py) ---------------
    kafka_security: Literal["sasl_ssl", "plaintext"] = Field(
        default="sasl_ssl",
        description="`sasl_ssl`: every Kafka link is TLS, every client authenticates with "
                    "SASL/SCRAM as its role's principal and the local cluster enforces ACLs; "
                    "`plaintext`: the explicit opt-out for an existing cluster without TLS or "
                    "authentication (no TLS, no SASL, no ACLs)")
    kafka_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) whose certificates Kafka brokers must present; "
                    "unset: the local cluster's own CA, `<home>/kafka/security/ca.pem`")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = Field(
        default="SCRAM-SHA-512", description="the SASL mechanism every client authenticates with")
    kafka_principals: Csv = Field(
        default=("admin=admin", "ops=ops", "origin=origin", "worker=worker", "edge=edge"),
        description="`role=user` pairs, comma-separated: the SCRAM user of each role "
                    "(`admin`, `ops`, `origin`, `worker`, `edge`); a role may have several "
                    "(`edge=edge-eu,edge=edge-us`), each granted the role's ACLs by "
                    "`positioning topics`; a process of a role connects as its first user "
                    "unless `kafka_username` says otherwise")
    kafka_credentials_file: Path | None = Field(
        default=None,
        description="JSON object `{user: password}` (mode 0600) where a process finds its "
                    "user's password when `kafka_password` is unset; unset: the local "
                    "cluster's own, `<home>/kafka/security/credentials.json`")
    kafka_username: str | None = Field(
        default=None,
        description="the SCRAM user this process connects as, whatever its role; unset: "
                    "its role's first user in `kafka_principals`")
    kafka_password: SecretStr | None = Field(
        default=None,
        description="the password of `kafka_username` (or of the role's user); unset: from "
                    "`kafka_credentials_file`. Never shown in reprs or logs")

    # -- topics ---------------------------------------------------------------
    logins_topic: str = Field(default="logins", description="the logins topic")
    offers_topic: str = Field(default="offers", description="the offers topic (compacted)")
    dlq_topic: str = Field(default="logins.dlq",
                           description="dead letters: logins the worker cannot process")
    partitions: PositiveInt = Field(default=6, description="partitions of each topic")
    replication_factor: PositiveInt | None = Field(
        default=None,
        description="replication factor of each topic, the worker's state changelog "
                    "included; unset: min(3, brokers), brokers being `kafka_nodes`, or the "
                    "brokers an external cluster reports; more than the brokers is refused")
    min_insync_replicas: PositiveInt | None = Field(
        default=None,
        description="`min.insync.replicas` of each topic: replicas that must have a record "
                    "before a producer (`acks=all`) is answered; unset: max(1, replication "
                    "factor - 1); more than the replication factor is refused")

    # -- tickets --------------------------------------------------------------
    ticket_secret: SecretStr | None = Field(
        default=None,
        description="`kid:secret[,kid:secret…]`: the first key signs, all verify (rotation: "
                    "put the new key first, keep the old until its tickets expire); secrets "
                    "≥ 16 characters. Unset: the local home's own key, `<home>/ticket-secret` "
                    "(256 random bits, mode 0600, made once). Never shown in reprs or logs")
    ticket_ttl_s: PositiveInt = Field(
        default=900,
        description="ticket lifetime, seconds; a ticket whose lifetime is longer is "
                    "refused (401)")
    ticket_clock_skew_s: NonNegativeFloat = Field(
        default=5.0,
        description="seconds a ticket's issue time may lie in the future (the clocks of "
                    "origin and edge differ); beyond it, 401")

    # -- offer signatures (runtime/offer_keys.py, schemas/offer_signatures.py) --
    offer_signing: Literal["ed25519", "off"] = Field(
        default="ed25519",
        description="`ed25519`: the worker signs every record of `offers` and edges serve only "
                    "what verifies; `off`: the explicit opt-out, for a trusted network only "
                    "(the worker does not sign, edges do not check)")
    offer_signing_keys_file: Path | None = Field(
        default=None,
        description="the worker's signing keys (JSON, mode 0600; `positioning keys` writes "
                    "it); unset: the local home's, `<home>/keys/offer-signing.json`, made "
                    "on first use")
    offer_verify_keys_file: Path | None = Field(
        default=None,
        description="the public keys edges verify offers with (JSON; no secret in it); "
                    "unset: the local home's, `<home>/keys/offer-verify.json`. Re-read when "
                    "it changes, so keys rotate without a restart")

    # -- origin ---------------------------------------------------------------
    origin_host: str = Field(default="127.0.0.1", description="where the origin listens")
    origin_port: PositiveInt = Field(default=8000, description="the origin's port")
    trusted_proxies: Csv = Field(
        default=(),
        description="comma-separated proxy addresses whose `X-Forwarded-For` is believed")
    login_ip_from_body: Literal["never", "local", "any"] = Field(
        default="never",
        description="who may choose the address a login is placed by, with `ip` in the body "
                    "(to play users of other countries: the story, the bench, load tests): "
                    "`never` (a body with `ip` is refused, 422: the address is the "
                    "connection's, or the trusted front door's `X-Forwarded-For`), `local` "
                    "(only a client on this machine's loopback; `positioning up` raises "
                    "`never` to it for its origin, which the story needs), `any` (test "
                    "stacks only)")
    login_timeout_s: NonNegativeFloat = Field(
        default=5.0,
        description="seconds a login waits for Kafka's acknowledgement before `503`")
    origin_linger_ms: NonNegativeInt = Field(
        default=1,
        description="ms the login producer waits for other logins to share a produce "
                    "request; each login's `202` comes up to that much later "
                    "(docs/decisions/0019-cpu-per-login.md)")

    # -- offer engine ---------------------------------------------------------
    model_latency_ms: NonNegativeFloat = Field(
        default=0.0,
        description="simulated model call in the engine, ms (asynchronous); "
                    "`./run demo` uses 500")

    # -- worker ---------------------------------------------------------------
    worker_id: str = Field(
        default="positioning-worker",
        description="the Faust app id: consumer group and changelog topic prefix")
    workers: PositiveInt = Field(
        default=1,
        description="worker processes `positioning up` starts, all in one consumer group "
                    "(named worker-1..N; `worker` when there is one)")
    worker_standby_replicas: NonNegativeInt = Field(
        default=1,
        description="standby copies of each user-state partition kept by other workers "
                    "(Faust's `table_standby_replicas`), so a failover replays only the "
                    "changelog's tail; a lone worker keeps none")
    worker_data_dir: Path | None = Field(
        default=None,
        description="the worker's RocksDB tables; every worker process needs its own "
                    "(RocksDB locks it). Unset: `<home>/worker`; `up` gives each of several "
                    "workers `worker-<i>` under this directory, or under `<home>`")
    worker_web_port: int = Field(
        default=6066,
        description="Faust's web port (worker i of several: this + i - 1); `0` turns it off")
    expiry_sweep_s: NonNegativeFloat = Field(
        default=10.0,
        description="seconds between tombstone sweeps for expired tickets")
    offers_tombstone_retention_s: PositiveInt = Field(
        default=86400,
        description="seconds a tombstone stays in `offers` (its delete.retention.ms, set when "
                    "the topic is created and checked by `positioning topics`); at least the "
                    "ticket lifetime plus its clock skew, so an edge away for longer finds "
                    "every offer whose tombstone it missed expired")
    offers_compaction_lag_s: PositiveInt = Field(
        default=3600,
        description="seconds a record of `offers` stays uncompacted (its min.compaction.lag.ms, "
                    "set when the topic is created): how long a stopped worker may take to "
                    "repair a ticket whose last record an edge would not keep")
    worker_concurrency: PositiveInt = Field(
        default=64, description="logins in flight in the worker (model calls overlap)")
    worker_session_timeout_s: float = Field(
        default=10.0, ge=6.0, le=300.0,
        description="seconds without a heartbeat after which the group gives a worker's "
                    "partitions to the others (Kafka's `session.timeout.ms`; the brokers "
                    "accept 6-300 s by default)")
    worker_stuck_after_s: NonNegativeFloat = Field(
        default=10.0,
        description="seconds a record may wait for the broker's ack before the worker "
                    "reports itself stuck (`/status/` 503); it keeps retrying regardless")
    breaker_dead_letters: PositiveInt = Field(
        default=100,
        description="dead letters of one error type in a row after which the worker stops "
                    "consuming and reports unhealthy (`/ready/` and `/status/` 503, with the "
                    "reason) until restarted; any login processed resets the count")
    worker_commit_stall_s: NonNegativeFloat = Field(
        default=60.0,
        description="seconds finished logins may wait for a commit before the worker "
                    "decides its Kafka consumer is stuck and replaces itself")

    # -- Kafka consumers (worker and edges) -----------------------------------
    fetch_wait_ms: PositiveInt = Field(
        default=5,
        description="worker and edge consumers: above one fetch per this many ms, the broker "
                    "answers a fetch once `fetch_min_bytes` are ready or this many ms have "
                    "passed, so a busy topic arrives in batches (runtime/fetch_tuning.py)")
    fetch_min_bytes: PositiveInt = Field(
        default=64 * 1024, description="bytes the broker gathers before answering a batched fetch")
    fetch_idle_wait_ms: NonNegativeInt = Field(
        default=500,
        description="below one fetch per `fetch_wait_ms`, each fetch asks for one byte and "
                    "may wait this long: the broker answers on the first record, and a quiet "
                    "topic costs one fetch per wait; `0` turns it off, every fetch batches "
                    "(runtime/fetch_tuning.py)")

    # -- edges ----------------------------------------------------------------
    edge_host: str = Field(default="127.0.0.1", description="where edge nodes listen")
    edge_metrics_host: str = Field(
        default="127.0.0.1",
        description="where edge nodes serve `/metrics`, apart from their public port: an "
                    "address only operators reach")
    edge_metrics_port_offset: NonNegativeInt = Field(
        default=100,
        description="an edge serves `/metrics` on its port + this (8200 for the edge on "
                    "8100); `0`, the opt-out, serves it on the public port")
    edges: Csv = Field(
        default=("eu=8100", "us=8101"),
        description="the local edge nodes, `region=port`, comma-separated: for `up`, "
                    "the story and the web client")
    edge_max_wait_s: NonNegativeFloat = Field(
        default=30.0,
        description="cap on `?wait`, seconds")
    edge_max_waiters: PositiveInt = Field(
        default=10_000, description="concurrent waiters per node before `503`")
    edge_ready_lag: int = Field(
        default=0, description="records a node may be behind and still be ready")
    edge_sse_lifetime_s: NonNegativeFloat = Field(
        default=30.0,
        description="longest an event stream stays open, seconds")
    edge_catch_up_flush_records: PositiveInt = Field(
        default=100_000,
        description="while catching up, writes skip RocksDB's log and the store is "
                    "flushed every this many records: at most this many are read again "
                    "after a crash mid-bootstrap")
    edge_block_cache_mb: PositiveInt = Field(
        default=256,
        description="RocksDB block cache of each edge's offer store, MiB: lookups in "
                    "cached blocks skip reading and decompressing them")
    cors_origins: Csv = Field(
        default=("*",),
        description="origins allowed to read offers from a browser, comma-separated")

    # -- HTTP bounds, origin and edges (runtime/http_protocol.py) --------------
    http_max_head_bytes: PositiveInt = Field(
        default=16 * 1024,
        description="origin and edges: request line and headers at most this many bytes, "
                    "else `431` and the connection closed")
    http_max_headers: PositiveInt = Field(
        default=64, description="at most this many header fields, else `431`")
    http_head_timeout_s: NonNegativeFloat = Field(
        default=10.0,
        description="seconds for a request's head to arrive (from its first byte, or from "
                    "the connection's opening), else `408` and closed")
    http_body_timeout_s: NonNegativeFloat = Field(
        default=10.0,
        description="seconds for the body to arrive after the head, else `408` and closed")

    # -- front door (devstack/front_door.py: HAProxy before origin and edges) ---
    front_door: bool = Field(
        default=True,
        description="whether `up` starts the front door (HAProxy) before the origin and "
                    "the edges; `false`: clients reach them directly")
    front_door_listen: str = Field(
        default="127.0.0.1:8443",
        description="the front door's address, `host:port`: `/offers/…` to the edge of "
                    "the user's region, everything else to the origin; HTTPS unless "
                    "`front_door_tls` is off")
    front_door_tls: bool = Field(
        default=True,
        description="whether the front door terminates TLS (1.2 at least, ALPN h2 and "
                    "http/1.1, HSTS on every answer); `false`, the explicit opt-out, serves "
                    "plain HTTP on `front_door_listen`")
    front_door_http_listen: str = Field(
        default="127.0.0.1:8080",
        description="`host:port` where the front door answers plain HTTP with a redirect "
                    "to HTTPS (308), when `front_door_tls` is on")
    front_door_metrics_listen: str = Field(
        default="127.0.0.1:8404",
        description="`host:port` of the front door's listener for operators: HAProxy's "
                    "own Prometheus exporter on `/metrics` (requests, responses by class "
                    "and backend, each server's state); 404 on the public ports")
    front_door_cert_file: Path | None = Field(
        default=None,
        description="PEM with the front door's certificate chain and private key (mode "
                    "0600); unset: one for 127.0.0.1 and localhost from the local home's "
                    "own CA, `<home>/front-door/tls.pem`, made at start")
    front_door_source: str | None = Field(
        default=None,
        description="the IP address the front door connects to the origin from, the one "
                    "the origin trusts; unset: for a loopback origin 127.0.0.2 (not "
                    "127.0.0.1, which every local program uses), else the address this "
                    "machine's routes pick to reach the origin")
    front_door_check_interval_s: PositiveFloat = Field(
        default=1.0,
        description="seconds between the front door's health checks of each server "
                    "(`GET /readyz`)")
    front_door_check_fall: PositiveInt = Field(
        default=2, description="failed checks in a row before a server is taken out")
    front_door_check_rise: PositiveInt = Field(
        default=2, description="passed checks in a row before a server is put back")
    front_door_login_rate: PositiveInt = Field(
        default=30,
        description="`POST /login` requests per client address and period the front door "
                    "lets through; more are answered `429` with `Retry-After`")
    front_door_login_rate_period_s: PositiveInt = Field(
        default=10,
        description="the period of `front_door_login_rate`, seconds")
    front_door_request_timeout_s: PositiveFloat = Field(
        default=10.0,
        description="seconds for a whole request, head and body, to reach the front door "
                    "(`timeout http-request`), else `408` and closed; head size and "
                    "field count are bounded by `http_max_head_bytes` and "
                    "`http_max_headers`, as on origin and edges")
    front_door_connect_timeout_s: PositiveFloat = Field(
        default=2.0,
        description="seconds the front door waits to connect to a server, and for a "
                    "free slot when all are busy (`timeout connect`, `timeout queue`)")
    front_door_max_connections: PositiveInt = Field(
        default=4096, description="concurrent client connections the front door accepts")

    # -- Locust (loadtest/locustfile.py) --------------------------------------
    loadtest_edge_url: str = Field(
        default="http://127.0.0.1:8100",
        description="the edge Locust's simulated users fetch their offers from")
    loadtest_gap_s: NonNegativeFloat = Field(
        default=1.0,
        description="seconds a Locust user spends between logging in and wanting the offer")

    @model_validator(mode="after")
    def _min_isr_within_replication(self) -> Settings:
        """Refuse a ``min_insync_replicas`` above an explicit ``replication_factor``."""
        rf, isr = self.replication_factor, self.min_insync_replicas
        if rf is not None and isr is not None and isr > rf:
            raise ValueError(
                f"{env_var('min_insync_replicas')}={isr} is above "
                f"{env_var('replication_factor')}={rf}: no write could ever be acknowledged")
        return self

    @model_validator(mode="after")
    def _tombstones_outlive_tickets(self) -> Settings:
        """Refuse tombstones that may vanish before the offers they end have expired."""
        if self.offers_tombstone_retention_s < self.ticket_ttl_s + self.ticket_clock_skew_s:
            raise ValueError(
                f"{env_var('offers_tombstone_retention_s')}={self.offers_tombstone_retention_s} "
                f"is below the ticket lifetime {env_var('ticket_ttl_s')}={self.ticket_ttl_s} "
                f"plus {env_var('ticket_clock_skew_s')}={self.ticket_clock_skew_s:g}: an edge "
                f"away for longer than the tombstones stay could serve a revoked offer")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment (or ``from_env``'s mapping); no files."""
        return init_settings, _DeclaredEnvSource(settings_cls, _ENVIRON.get())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings read from ``environ`` alone (default: ``os.environ``).

        Raises pydantic.ValidationError (a ValueError) naming the bad variable.
        """
        if environ is None:
            return cls()
        with _reading(environ):
            return cls()

    @field_validator("kafka_principals")
    @classmethod
    def _principals_are_role_user(cls, pairs: tuple[str, ...]) -> tuple[str, ...]:
        roles = {"admin", "ops", "origin", "worker", "edge"}
        role_of: dict[str, str] = {}
        for pair in pairs:
            role, sep, user = pair.partition("=")
            role, user = role.strip(), user.strip()
            if not sep or role not in roles or not re.fullmatch(r"[\w.@-]+", user):
                raise ValueError(f"each entry is `role=user` with a role among "
                                 f"{', '.join(sorted(roles))} and a user of letters, digits "
                                 f"and `._@-`, not {pair!r}")
            if role_of.setdefault(user, role) != role:
                # A principal's ACLs are the union of its roles', so it would hold more
                # than either and be refused by both.
                raise ValueError(f"user {user!r} is given two roles, {role_of[user]} and "
                                 f"{role}: give each role users of its own")
        return pairs

    @field_validator("kafka_server_properties")
    @classmethod
    def _properties_are_key_value(cls, lines: tuple[str, ...]) -> tuple[str, ...]:
        for line in lines:
            key, sep, _ = line.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"each line is `key=value`, not {line!r}")
        return lines

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated like a new instance."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(changes)
        return type(self)(**values)

    def to_env(self) -> dict[str, str]:
        """Environment variables that reproduce these settings in a child process.

        Unset (None) settings are left out: the child falls back to its own
        environment, else the default.
        """
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                out[env_var(name)] = _env_text(value)
        return out

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect: the configured cluster, or every node of the local one."""
        return self.kafka_bootstrap_servers or ",".join(self.local_kafka_addresses)

    @property
    def local_kafka_addresses(self) -> tuple[str, ...]:
        """The client address (``host:port``) of each local Kafka node, node 1 first.

        Node i listens on ``kafka_listen``'s port + 2·(i−1); one node keeps
        ``kafka_listen`` exactly as written.
        """
        if self.kafka_nodes == 1:
            return (self.kafka_listen,)
        host, port = self.kafka_host_port
        return tuple(f"{host}:{port + 2 * i}" for i in range(self.kafka_nodes))

    @property
    def kafka_node_heap(self) -> str:
        """The JVM heap of each local Kafka node (``-Xmx`` syntax, e.g. ``384m``)."""
        if self.kafka_heap is not None:
            return self.kafka_heap
        return "512m" if self.kafka_nodes == 1 else "384m"

    @property
    def uses_external_kafka(self) -> bool:
        """Whether a cluster is configured (then no local broker is started)."""
        return bool(self.kafka_bootstrap_servers)

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        """The local broker's listen address as (host, port); the port defaults to 9092."""
        return _split_hostport(self.kafka_listen, 9092)

    @property
    def kafka_dir(self) -> Path:
        """The local broker's data and configuration."""
        return self.home / "kafka"

    @property
    def kafka_security_dir(self) -> Path:
        """The local cluster's CA, certificates and passwords (mode 0700)."""
        return self.kafka_dir / "security"

    @property
    def signs_offers(self) -> bool:
        """Whether offers are signed and verified (``offer_signing`` is ``ed25519``)."""
        return self.offer_signing == "ed25519"

    @property
    def secured(self) -> bool:
        """Whether Kafka links are TLS with SASL (``kafka_security`` is ``sasl_ssl``)."""
        return self.kafka_security == "sasl_ssl"

    @property
    def logs_dir(self) -> Path:
        """Where the stack's components write their logs."""
        return self.home / "logs"

    @property
    def edge_ports(self) -> dict[str, int]:
        """region -> port of the local edge nodes (from ``edges``).

        Raises ValueError if an entry's port is not a number.
        """
        out = {}
        for entry in self.edges:
            region, _, port = entry.partition("=")
            out[region] = int(port)
        return out

    @property
    def front_door_host_port(self) -> tuple[str, int]:
        """The front door's listen address as (host, port); the port defaults to 8443."""
        return _split_hostport(self.front_door_listen, 8443)

    def edge_metrics_url(self, port: int) -> str:
        """Where the edge listening on ``port`` serves ``/metrics``."""
        if self.edge_metrics_port_offset == 0:
            return f"http://{self.edge_host}:{port}/metrics"
        return f"http://{self.edge_metrics_host}:{port + self.edge_metrics_port_offset}/metrics"

    @property
    def front_door_metrics_host_port(self) -> tuple[str, int]:
        """The front door's metrics listener as (host, port); the port defaults to 8404."""
        return _split_hostport(self.front_door_metrics_listen, 8404)

    @property
    def front_door_http_host_port(self) -> tuple[str, int]:
        """The front door's plain-HTTP (redirecting) address as (host, port)."""
        return _split_hostport(self.front_door_http_listen, 8080)

    @property
    def front_door_scheme(self) -> str:
        """``https``, or ``http`` when ``front_door_tls`` is off."""
        return "https" if self.front_door_tls else "http"

    @property
    def worker_state_dir(self) -> Path:
        """The worker's state directory (Faust's ``datadir``): ``worker_data_dir`` or
        ``<home>/worker``."""
        return self.worker_data_dir or self.home / "worker"

    def edge_data_dir(self, region: str) -> Path:
        """The RocksDB directory of the local edge node of ``region``."""
        return self.home / "edge" / region


@contextmanager
def _reading(environ: Mapping[str, str]) -> Iterator[None]:
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


def _split_hostport(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host:
        return value, default_port
    return host, int(port)


def env_var(name: str) -> str:
    """The environment variable of the setting ``name``. Raises KeyError for unknown names."""
    alias = Settings.model_fields[name].validation_alias
    if not isinstance(alias, str):  # the alias generator gives every field one name
        raise TypeError(f"{name} has no single environment variable: {alias!r}")
    return alias


def _env_text(value: object) -> str:
    """A value as the environment spells it; ``Settings`` parses it back to the same value.

    An empty list is a lone comma: an empty variable means the default.
    """
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple):
        return ",".join(value) or ","
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# -- docs/configuration.md ----------------------------------------------------

_DOC_INTRO = """\
# Configuration

<!-- Generated from runtime/settings.py: python -m runtime.settings > docs/configuration.md -->

Every setting is declared once, as a field of `Settings` in
`runtime/settings.py`, and read from these environment variables; an empty
variable means the default. Lists are comma-separated. Components get their
settings from that object, child processes through the environment.

Read elsewhere, and not settings of this system: `XDG_CACHE_HOME` (where
Maven's Kafka jars are cached), Faust's own variables (`F_DATADIR` and the
like), the bench's hand-offs to its child processes (`FLOOR_*`,
`BENCH_TICKETS`), and `KAFKA_BOOTSTRAP_SERVERS` in the tests (an existing
cluster to test against).

| setting | variable | default | meaning |
| --- | --- | --- | --- |
"""


def _doc_default(field: FieldInfo) -> str:
    value = field.default
    if value is None:
        return "(unset)"
    if value == ():
        return "(none)"
    return f"`{_env_text(value)}`"


def configuration_markdown() -> str:
    """docs/configuration.md: one table row per setting, from the field declarations."""
    rows = []
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{env_var(name)}` | {_doc_default(field)} | {meaning} |\n")
    return _DOC_INTRO + "".join(rows)


if __name__ == "__main__":
    sys.stdout.write(configuration_markdown())
