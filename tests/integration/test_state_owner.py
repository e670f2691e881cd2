"""A worker or an edge whose local store was made from another Kafka cluster stops at
start and says why, instead of reading that cluster's offsets in this one (a worker
crash-looped on Faust's ConsistencyError when a home switched clusters)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.kafka_connection import cluster_id
from runtime.kafka_security import Role, kafka_access
from runtime.settings import Settings
from runtime.state_owner import CLUSTER_FILE
from runtime.topics import ensure_topics
from tests.conftest import unique_settings

pytestmark = pytest.mark.integration


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSITIONING_")}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                          text=True, env={**env, **settings.to_env()}, timeout=120)


def _made_elsewhere(directory: Path) -> None:
    directory.mkdir(parents=True)
    (directory / CLUSTER_FILE).write_text("another-cluster-id\n")


def test_a_worker_whose_state_is_another_clusters_stops_without_restarting(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(settings))   # as the admin: the worker role only verifies them
    _made_elsewhere(settings.worker_state_dir)
    result = _run(settings, "worker")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "was made from Kafka cluster another-cluster-id" in result.stderr
    assert "restarting" not in result.stderr + result.stdout


def test_an_edge_whose_store_is_another_clusters_stops(kafka_bootstrap: str,
                                                        tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    store = tmp_path / "edge"
    _made_elsewhere(store)
    result = _run(settings, "edge", "--region", "eu", "--port", "0", "--data-dir", str(store))
    assert result.returncode != 0
    assert "was made from Kafka cluster another-cluster-id" in result.stderr + result.stdout


async def test_the_cluster_id_is_the_same_asked_as_admin_or_as_an_edge(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    report = await ensure_topics(settings)
    assert report.cluster_id and len(report.cluster_id) == 22   # base64 of 16 bytes
    edge = kafka_access(settings, Role.EDGE)
    assert await cluster_id(settings.bootstrap_servers, edge) == report.cluster_id
