"""A single-node Apache Kafka broker in KRaft mode, run from the jars.

Layout under ``<home>/kafka/``: ``server.properties``, ``data/`` (the log
dirs and the KRaft metadata), ``broker.log`` and ``broker.pid`` (pid and
creation time, see devstack/processes.py). The process runs in its own
session so that it outlives the command that started it and so that
``stop`` can signal the whole group.
"""

from __future__ import annotations

import base64
import functools
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from devstack.broker import jars
from devstack.broker.probe import answers_metadata
from devstack.ports import port_in_use
from devstack.processes import running_pid, tail, terminate, write_pid
from runtime.settings import Settings
from runtime.waiting import TimedOut, wait_until

# Seconds a broker killed a moment ago may take to release its ports.
_PORT_RELEASE_GRACE_S = 5.0


class BrokerError(RuntimeError):
    """The local broker could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    address: str

    def describe(self) -> str:
        if self.running:
            return f"kafka running (pid {self.pid}) on {self.address}"
        return f"kafka stopped ({self.address})"


def _random_cluster_id() -> str:
    """A Kafka Uuid: 16 random bytes, url-safe base64 without padding.

    Like Kafka's own Uuid.randomUuid, never one that starts with "-", which a
    command line would take for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalBroker:
    """Start, stop and inspect the development broker described by settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.kafka_dir.resolve()
        self.host, self.port = settings.kafka_host_port
        self.controller_port = settings.kafka_controller_port or self.port + 1

    # -- files -------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "broker.log"

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def server_properties(self) -> str:
        """The broker's configuration; docker-compose.kafka.yml mirrors it."""
        h, p, c = self.host, self.port, self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{h}:{c}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "6",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A restarted broker re-registers once its old session expires:
            # keep that short so a warm start takes seconds, not ten.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "2500",
            # Compaction that is visible in a development session.
            "log.cleaner.min.cleanable.ratio": "0.1",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    # -- state ---------------------------------------------------------------
    def _running_pid(self) -> int | None:
        """The pid of our broker if it runs: the pid file's process, alive, created
        when the file says, and a kafka.Kafka started with our config file."""
        return running_pid(self.pid_file, ["kafka.Kafka", str(self.config_file)])

    def _port_free(self, port: int) -> bool:
        return not port_in_use(self.host, port)

    def status(self) -> BrokerStatus:
        """Whether our broker runs, and its pid if so; never raises."""
        pid = self._running_pid()
        return BrokerStatus(running=pid is not None, pid=pid, address=self.address)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> tuple[BrokerStatus, bool]:
        """Start the broker and wait until it answers metadata requests.

        Returns the status and whether this call started it (False: it was
        already running, and nothing was done).

        Raises:
            BrokerError: a port is taken, java is missing, formatting the
                storage failed, or the broker exited or did not answer in
                ``kafka_start_timeout_s``.
            JarsUnavailable: the Kafka jars could not be resolved.
        """
        current = self.status()
        if current.running:
            return current, False
        stale = self.pid_file.exists()
        if stale:
            self.pid_file.unlink()  # the process it names is gone
        # A broker killed a moment ago may still be releasing its sockets.
        grace_s = _PORT_RELEASE_GRACE_S if stale else 0.0
        for port in (self.port, self.controller_port):
            try:
                wait_until(functools.partial(self._port_free, port), grace_s,
                           f"port {self.host}:{port} to be free")
            except TimedOut:
                raise BrokerError(
                    f"port {self.host}:{port} is already in use by another program; "
                    "stop it or set POSITIONING_KAFKA_LISTEN to another address"
                ) from None
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH: install a JDK 17+ (apt-get install default-jdk)")
        classpath = jars.classpath(self.settings.kafka_home)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.server_properties())
        jvm = [
            java, f"-Xmx{self.settings.kafka_heap}", f"-Xms{self.settings.kafka_heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={jars.packaged_file('log4j2.properties')}",
            f"-Dkafka.logs.dir={self.dir}", "-cp", classpath,
        ]
        if not (self.data_dir / "meta.properties").exists():
            self._format(jvm)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        write_pid(self.pid_file, proc.pid)
        self._wait_ready(proc)
        return self.status(), True

    def _format(self, jvm: list[str]) -> None:
        cmd = [*jvm, "kafka.tools.StorageTool", "format", "--ignore-formatted",
               f"--cluster-id={_random_cluster_id()}", "-c", str(self.config_file)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting the KRaft storage failed:\n{result.stdout}{result.stderr}")

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait until the started broker answers metadata requests.

        Raises:
            BrokerError: it exited, or did not answer within ``kafka_start_timeout_s``
                (then it is stopped).
        """

        def ready() -> bool:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited with code {proc.returncode}; end of {self.log_file}:\n"
                    + tail(self.log_file, 30)
                )
            # A TCP probe first: the metadata client logs loudly while refused.
            return port_in_use(self.host, self.port) and answers_metadata(self.address,
                                                                           timeout_s=2.0)

        timeout_s = self.settings.kafka_start_timeout_s
        try:
            wait_until(ready, timeout_s, "the broker to answer metadata requests", interval_s=0.2)
        except TimedOut:
            self.stop()
            raise BrokerError(
                f"the broker did not answer within {timeout_s:.0f}s; "
                f"end of {self.log_file}:\n" + tail(self.log_file, 30)
            ) from None

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, wait up to ``timeout_s`` seconds, then SIGKILL if needed.

        Returns whether our broker was running. A pid file naming another
        process (or none) is removed and nothing is signalled.
        """
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        terminate(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True
