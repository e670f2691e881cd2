"""`positioning up` with POSITIONING_WORKERS=2: two workers in one group, ready and
sharing the partitions when `up` returns; `down` stops both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_edge_port, free_port, port_in_use
from devstack.processes import pid_alive, read_pid_record
from tests.conftest import unique_settings

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


def two_free_ports() -> int:
    """A free port whose successor is free too (workers listen on port + i - 1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and not port_in_use("127.0.0.1", port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def test_up_runs_two_workers_that_share_the_partitions(kafka_bootstrap: str,
                                                       tmp_path: Path) -> None:
    web_port = two_free_ports()
    settings = unique_settings(kafka_bootstrap, tmp_path, origin_port=free_port(), workers=2,
                               worker_web_port=web_port, partitions=4,
                               edges=(f"eu={free_edge_port()}",))
    env = {**os.environ, **settings.to_env()}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    up = cli("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "worker-1" in up.stdout and "worker-2" in up.stdout
        shares = []
        for port in (web_port, web_port + 1):   # `up` returned: both ready, after the rebalance
            response = httpx.get(f"http://127.0.0.1:{port}/ready/", timeout=5)
            assert response.status_code == 200, response.text
            shares.append(response.json()["partitions"])
        assert all(shares) and not set(shares[0]) & set(shares[1])
        assert sorted(shares[0] + shares[1]) == [0, 1, 2, 3]
        assert (tmp_path / "worker-1").is_dir() and (tmp_path / "worker-2").is_dir()
        run_dir = tmp_path / "run"
        pids = {name: read_pid_record(run_dir / f"{name}.pid") for name in ("worker-1", "worker-2")}
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "worker-1" in down.stdout and "worker-2" in down.stdout
    for record in pids.values():
        assert record is not None and not pid_alive(record.pid)
    assert not port_in_use("127.0.0.1", web_port) and not port_in_use("127.0.0.1", web_port + 1)
