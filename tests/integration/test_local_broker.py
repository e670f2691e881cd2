"""`positioning kafka start / stop / status` on a broker of this test's own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.broker.local import BrokerError, LocalBroker
from devstack.broker.probe import answers_metadata
from devstack.ports import free_port_pair
from runtime.settings import Settings
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    settings = Settings(home=tmp_path, kafka_listen=f"127.0.0.1:{free_port_pair()}")
    local = LocalBroker(settings)
    try:
        yield local
    finally:
        local.stop(timeout_s=10)


def _cli(broker: LocalBroker, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "POSITIONING_HOME": str(broker.settings.home),
           "POSITIONING_KAFKA_LISTEN": broker.address}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.run([sys.executable, "-m", "cli.main", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_start_status_stop_through_the_cli(broker: LocalBroker) -> None:
    stopped = _cli(broker, "kafka", "status")
    assert stopped.returncode == 1 and "stopped" in stopped.stdout

    started = _cli(broker, "kafka", "start")
    assert started.returncode == 0, started.stderr
    assert answers_metadata(broker.address, broker.access())

    again = _cli(broker, "kafka", "start")
    assert again.returncode == 0 and "already running" in again.stdout

    running = _cli(broker, "kafka", "status")
    assert running.returncode == 0 and broker.address in running.stdout

    assert _cli(broker, "kafka", "stop").returncode == 0
    assert not broker.status().running
    assert not answers_metadata(broker.address, broker.access(), timeout_s=1)


def test_stale_pid_file_does_not_block_start(broker: LocalBroker) -> None:
    broker.dir.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    broker.pid_file.write_text(f"{dead.pid}\n")
    assert not broker.status().running
    status, started = broker.start()
    assert started and status.running and status.pid != dead.pid


def test_sigkilled_broker_restarts_with_its_data(broker: LocalBroker) -> None:
    status, _ = broker.start()
    assert status.pid is not None
    os.kill(status.pid, signal.SIGKILL)
    wait_until(lambda: not broker.status().running, 10, "the killed broker to be seen as stopped")
    assert broker.pid_file.exists()  # stale: the next start must cope with it
    restarted, started = broker.start()
    assert started and restarted.running and restarted.pid != status.pid
    assert answers_metadata(broker.address, broker.access())


def test_port_taken_by_another_program_is_a_clear_error(broker: LocalBroker) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((broker.host, broker.port))
        squatter.listen()
        with pytest.raises(BrokerError, match="already in use by another program"):
            broker.start()
    assert not broker.pid_file.exists()
