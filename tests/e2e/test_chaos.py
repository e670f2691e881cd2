"""`positioning chaos`, short: SIGKILLed workers and an edge, every acked login counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.ports import free_edge_port, free_port, free_port_run
from tests.conftest import unique_settings

pytestmark = pytest.mark.e2e


def run_chaos(kafka_bootstrap: str, home: Path, *args: str) -> dict[str, object]:
    settings = unique_settings(kafka_bootstrap, home, origin_port=free_port(),
                               worker_web_port=free_port(),
                               edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    env = {**os.environ, **settings.to_env()}
    result = subprocess.run([sys.executable, "-m", "cli.main", "chaos", "--quiet",
                             "--ttl", "40", *args], env=env, capture_output=True, text=True,
                            timeout=600)
    report_path = home / "chaos" / "chaos-latest.json"
    assert report_path.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert result.returncode == 0, (result.stdout[-3000:], report["summary"], report["runs"])
    return report  # type: ignore[no-any-return]


def test_chaos_kills_the_worker_and_an_edge_and_counts_no_loss(kafka_bootstrap: str,
                                                                 tmp_path: Path) -> None:
    report = run_chaos(kafka_bootstrap, tmp_path / "workers", "--kill", "worker", "--runs", "3",
                       "--logins", "200", "--rate", "80", "--seed", "3")
    summary = report["summary"]
    assert summary["runs"] == 3 and summary["acked"] == 600  # type: ignore[index]
    assert {k: summary[k] for k in ("lost", "wrong_visits", "phantoms", "inconsistent",  # type: ignore[index]
                                    "missing_tombstones", "gave_up")} == dict.fromkeys(
        ("lost", "wrong_visits", "phantoms", "inconsistent", "missing_tombstones", "gave_up"), 0)
    assert all(run["killed"] == "worker" for run in report["runs"])  # type: ignore[attr-defined]

    report = run_chaos(kafka_bootstrap, tmp_path / "edge", "--kill", "edge", "--runs", "1",
                       "--logins", "150", "--rate", "80", "--seed", "4")
    run = report["runs"][0]  # type: ignore[index]
    assert run["killed"].startswith("edge-") and run["acked"] == 150
    assert report["summary"]["lost"] == 0  # type: ignore[index]


@pytest.mark.cluster
def test_chaos_kills_a_node_of_a_three_node_cluster_and_counts_no_loss(tmp_path: Path) -> None:
    """The chaos stack on its own 3-node cluster (RF 3, min ISR 2); a random node SIGKILLed
    mid-stream each run: every acked login still has exactly one offer on every edge."""
    home = tmp_path / "cluster"
    settings = unique_settings(f"127.0.0.1:{free_port()}", home, origin_port=free_port(),
                               worker_web_port=free_port(),
                               edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    # A cluster of the chaos stack's own, with its own CA and passwords (secured, as
    # every local cluster): not the session broker's.
    settings = settings.replace(kafka_bootstrap_servers=None, kafka_security="sasl_ssl",
                                kafka_ca_file=None, kafka_credentials_file=None,
                                kafka_listen=f"127.0.0.1:{free_port_run(6)}")
    env = {**os.environ, **settings.to_env()}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "chaos", "--quiet", "--ttl", "40", "--nodes", "3",
             "--kill", "broker", "--runs", "2", "--logins", "200", "--rate", "80",
             "--seed", "9"], env=env, capture_output=True, text=True, timeout=900)
        latest = home / "chaos" / "chaos-latest.json"
        assert latest.exists(), (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
        report = json.loads(latest.read_text())
        assert result.returncode == 0, (result.stdout[-3000:], report["summary"])
        summary = report["summary"]
        assert summary["runs"] == 2 and summary["acked"] == 400
        assert {k: summary[k] for k in ZERO} == dict.fromkeys(ZERO, 0)
        assert all(run["killed"].startswith("kafka-") for run in report["runs"])
    finally:
        subprocess.run([sys.executable, "-m", "cli.main", "kafka", "stop", "--nodes", "3"],
                       env={**env, "POSITIONING_HOME": str(home / "chaos" / "stack")},
                       capture_output=True, timeout=120)


ZERO = ("lost", "wrong_visits", "phantoms", "inconsistent", "missing_tombstones", "gave_up")
