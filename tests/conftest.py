"""Shared fixtures: a real Kafka broker for the whole test session, and a 3-node cluster.

The broker is the project's own local broker (the same code path as
``positioning kafka start``) on free ports in a temporary folder, or the
cluster named by ``KAFKA_BOOTSTRAP_SERVERS``. The cluster tests (marker
``cluster``) share one local 3-node KRaft cluster of their own (the code
path of ``positioning kafka start`` with ``POSITIONING_KAFKA_NODES=3``),
started by the first test that asks for it. Both are stopped at the end of
the session even when tests fail. ``POSITIONING_*`` variables of the shell that
runs the tests are dropped first: ``Settings(...)`` reads the environment for
every field it is not given, and a test's settings must not depend on the
shell.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devstack.broker.cluster import LocalCluster
from devstack.broker.local import LocalBroker
from devstack.ports import free_port, free_port_pair, free_port_run
from devstack.processes import kill
from runtime.acls import ensure_principals
from runtime.kafka_security import security_files
from runtime.settings import Settings


def pytest_configure(config: pytest.Config) -> None:
    for name in [name for name in os.environ if name.startswith("POSITIONING_")]:
        del os.environ[name]


@pytest.fixture(scope="session", autouse=True)
def sweep_left_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session, even an interrupted one, SIGKILL what the tests started
    and left running: the session's own ``positioning`` and Kafka processes, and any
    process whose ``POSITIONING_HOME`` is in the session's temporary folder (components
    started by ``positioning up``, which are not our children). A worker whose broker is
    gone re-execs itself forever by design; without this, one left by an interrupted run
    crash-loops until someone finds it. Set up first, so torn down after every other
    session fixture (the brokers stop themselves first)."""
    basetemp = str(tmp_path_factory.getbasetemp())
    yield
    me = psutil.Process()
    ours = {c for c in me.children(recursive=True)
            if any(mark in " ".join(_cmdline(c)) for mark in ("cli.main", "kafka.Kafka"))}
    for proc in psutil.process_iter():
        try:
            if proc.pid != me.pid and proc.environ().get("POSITIONING_HOME", "").startswith(
                    basetemp):
                ours.add(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    for proc in ours:
        if proc.is_running():
            print(f"\nsweep: SIGKILL pid {proc.pid} left running: "
                  f"{' '.join(_cmdline(proc))[:200]}", file=sys.stderr)
            kill(proc.pid)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


# Bootstrap servers of each cluster the tests started -> that cluster's settings (its home
# holds its CA and passwords: devstack/broker/security.py).
_CLUSTERS: dict[str, Settings] = {}


def register_cluster(bootstrap: str, settings: Settings) -> None:
    """Let ``unique_settings`` connect to ``bootstrap`` with the CA and passwords of the
    local cluster whose settings are ``settings`` (a test's own broker calls this)."""
    _CLUSTERS[bootstrap] = settings


def security_of(bootstrap: str) -> dict[str, object]:
    """The settings that connect to ``bootstrap`` securely: its home's CA and credentials
    files (an unknown address, e.g. a broker that is down, gets the first cluster's);
    plaintext for an external cluster (``KAFKA_BOOTSTRAP_SERVERS``)."""
    cluster = _CLUSTERS.get(bootstrap) or next(iter(_CLUSTERS.values()), None)
    if cluster is None:
        return {"kafka_security": "plaintext"}
    return security_files(cluster)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a running broker for the whole session: the project's own,
    secured (TLS, SCRAM, ACLs), or an existing plaintext cluster named by
    ``KAFKA_BOOTSTRAP_SERVERS``."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    home = tmp_path_factory.mktemp("kafka-home")
    settings = Settings(home=home, kafka_listen=f"127.0.0.1:{free_port_pair()}")
    broker = LocalBroker(settings)
    broker.start()
    register_cluster(broker.address, settings)
    try:
        yield broker.address
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def three_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a local 3-node cluster shared by the session's cluster tests.

    Every node is broker and controller (devstack/broker/cluster.py); the
    topics ``ensure_topics`` creates on it get replication factor 3 and
    min.insync.replicas 2 (runtime/topics.py, from the brokers it reports).
    """
    home = tmp_path_factory.mktemp("kafka-cluster-home")
    settings = Settings(home=home, kafka_nodes=3, kafka_listen=f"127.0.0.1:{free_port_run(6)}")
    cluster = LocalCluster(settings)
    try:
        cluster.start()
        register_cluster(cluster.bootstrap_servers, settings)
        yield cluster.bootstrap_servers
    finally:
        cluster.stop()


@pytest.fixture
def base_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings with unique topic names, so tests never see each other's data."""
    return unique_settings(kafka_bootstrap, tmp_path / "home")


def unique_settings(kafka_bootstrap: str, home: Path, **changes: object) -> Settings:
    """Settings with topics, worker group, state and a front-door port of their own, logins
    that may name their ``ip`` from this machine, and the cluster's security; on a cluster
    the tests started, every role's principal is granted its ACLs on them (as
    ``positioning topics`` does)."""
    suffix = uuid.uuid4().hex[:8]
    base = Settings(
        **security_of(kafka_bootstrap),  # type: ignore[arg-type]
        home=home,
        kafka_bootstrap_servers=kafka_bootstrap,
        logins_topic=f"logins-{suffix}",
        offers_topic=f"offers-{suffix}",
        dlq_topic=f"logins.dlq-{suffix}",
        worker_id=f"worker-{suffix}",
        worker_web_port=0,
        partitions=3,
        ticket_secret="test:" + "k" * 32,
        expiry_sweep_s=1.0,
        front_door_listen=f"127.0.0.1:{free_port()}",
        front_door_http_listen=f"127.0.0.1:{free_port()}",
        front_door_metrics_listen=f"127.0.0.1:{free_port()}",
        # The tests play users of several countries from this machine, as the story does.
        login_ip_from_body="local",
    )
    settings = base.replace(**changes)
    if kafka_bootstrap in _CLUSTERS:
        grant_roles(settings)
    return settings


def grant_roles(settings: Settings) -> None:
    """Grant every role's principal its ACLs on ``settings``' topics and groups."""
    ensure_principals(settings)
