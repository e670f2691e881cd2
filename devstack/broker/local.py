"""One Apache Kafka node in KRaft mode (broker and controller), run from the jars.

Alone, it is the single-node development broker; devstack/broker/cluster.py
runs several as one cluster. Layout (devstack/broker/layout.py), under
``<home>/kafka/`` for one node: ``server.properties``, ``data/`` (the log
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.broker import jars
from devstack.broker.config import render, server_properties, with_overrides
from devstack.broker.layout import Node, cluster_layout
from devstack.broker.probe import answers_metadata
from devstack.broker.security import BrokerSecurity, ensure_local_security, grant_local_admin
from devstack.ports import port_in_use
from devstack.processes import running_pid, tail, terminate, write_pid
from runtime.kafka_security import CREDENTIALS_FILE, KafkaAccess, Role, kafka_access, read_credentials
from runtime.private_files import write_private
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


def node_pid(node_dir: Path) -> int | None:
    """The pid of the node kept in ``node_dir`` if it runs: the pid file's process, alive,
    created when the file says, and a kafka.Kafka started with that folder's config file."""
    return running_pid(node_dir / "broker.pid",
                       ["kafka.Kafka", str(node_dir / "server.properties")])


class LocalBroker:
    """Start, stop and inspect one local Kafka node.

    ``LocalBroker(settings)`` is the single-node development broker. With
    ``node`` and ``cluster`` (devstack/broker/layout.py) it is that node of
    a cluster; LocalCluster then formats and launches the nodes together,
    since none answers before a majority of the controllers runs.
    """

    def __init__(self, settings: Settings, node: Node | None = None,
                 cluster: Sequence[Node] | None = None) -> None:
        self.settings = settings
        if node is None:
            node = cluster_layout(settings.replace(kafka_nodes=1))[0]
        self.node = node
        self.cluster = list(cluster) if cluster is not None else [node]
        self.dir = node.dir
        self.host, self.port = node.host, node.port
        self.controller_port = node.controller_port

    # -- files -------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.node.pid_file

    @property
    def log_file(self) -> Path:
        return self.node.log_file

    @property
    def config_file(self) -> Path:
        return self.node.config_file

    @property
    def data_dir(self) -> Path:
        return self.node.data_dir

    @property
    def address(self) -> str:
        return self.node.address

    def security(self) -> BrokerSecurity | None:
        """The home's TLS material and passwords (made if missing); None when plaintext."""
        return ensure_local_security(self.settings) if self.settings.secured else None

    def server_properties(self, security: BrokerSecurity | None = None) -> str:
        """The node's configuration (devstack/broker/config.py; the compose files mirror it)
        with the settings' ``kafka_server_properties`` over it."""
        return render(with_overrides(server_properties(self.node, self.cluster, security),
                                     self.settings.kafka_server_properties))

    def access(self) -> KafkaAccess:
        """How the probes connect to this node: as the admin role."""
        return kafka_access(self.settings, Role.ADMIN)

    # -- state ---------------------------------------------------------------
    def _running_pid(self) -> int | None:
        return node_pid(self.dir)

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
        self.prepare(_random_cluster_id())
        proc = self.launch()
        self._wait_ready(proc)
        grant_local_admin(self.settings)
        return self.status(), True

    def prepare(self, cluster_id: str) -> None:
        """Make the stopped node ready to launch: ports free, configuration written, storage
        formatted with ``cluster_id`` unless it already is (then its own id stays).

        Raises:
            BrokerError: a port is taken, java is missing, or formatting failed.
            JarsUnavailable: the Kafka jars could not be resolved.
        """
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
        self.dir.mkdir(parents=True, exist_ok=True)
        security = self.security()
        # Mode 0600: a secured node's file holds its inter-broker password.
        write_private(self.config_file, self.server_properties(security).encode())
        if not (self.data_dir / "meta.properties").exists():
            self._format(self._jvm(), cluster_id, security)

    def _jvm(self) -> list[str]:
        """The java command line up to the main class.

        Raises:
            BrokerError: java is not on PATH.
            JarsUnavailable: the Kafka jars could not be resolved.
        """
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH: install a JDK 17+ (apt-get install default-jdk)")
        classpath = jars.classpath(self.settings.kafka_home)
        heap = self.settings.kafka_node_heap
        return [
            java, f"-Xmx{heap}", f"-Xms{heap}",
            # The serial collector: a node's live heap is small and its young collections
            # short, and it spares the broker G1's barriers and threads on a machine it
            # shares (docs/decisions/0014-answer-on-the-first-record.md).
            "-XX:+UseSerialGC", *self._jit_flags(), "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={jars.packaged_file('log4j2.properties')}",
            f"-Dkafka.logs.dir={self.dir}", "-cp", classpath,
        ]

    def _jit_flags(self) -> list[str]:
        """The JIT of a node of a local cluster: the quick compiler only (C1).

        Several nodes on one small machine compile their hot paths at the same
        time, and until C2 has finished (minutes, on two cores) a replicated
        write waits for busy JVMs in turn (docs/decisions/0018-replicated-latency.md).
        A single node keeps both compilers.
        """
        return ["-XX:TieredStopAtLevel=1"] if len(self.cluster) > 1 else []

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the prepared node's JVM in its own session and record its pid; does not wait.

        Raises:
            BrokerError: java is missing.
            JarsUnavailable: the Kafka jars could not be resolved.
        """
        jvm = self._jvm()
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        write_pid(self.pid_file, proc.pid)
        return proc

    def exited(self, proc: subprocess.Popen[bytes]) -> BrokerError | None:
        """If the launched ``proc`` has exited: the error that says so (its pid file removed)."""
        if proc.poll() is None:
            return None
        self.pid_file.unlink(missing_ok=True)
        return BrokerError(
            f"node {self.node.node_id} exited with code {proc.returncode}; "
            f"end of {self.log_file}:\n" + tail(self.log_file, 30))

    def cluster_id(self) -> str | None:
        """The cluster id the node's storage was formatted with; None if it is not formatted."""
        try:
            text = (self.data_dir / "meta.properties").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        return None

    def _format(self, jvm: list[str], cluster_id: str, security: BrokerSecurity | None) -> None:
        """Format the storage; secured, with every SCRAM user of the home (KIP-900), so the
        nodes can authenticate to each other before any admin client could add one."""
        args = ["kafka.tools.StorageTool", "format", "--ignore-formatted",
                f"--cluster-id={cluster_id}", "-c", str(self.config_file)]
        if security is not None:
            passwords = read_credentials(security.dir / CREDENTIALS_FILE)
            for user, password in passwords.items():
                args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]",
                         "--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        # The main class and its arguments go in a java argument file (JEP 293) of mode
        # 0600, so no password is on a command line that `ps` shows every local user.
        argfile = self.dir / "format.args"
        write_private(argfile, "\n".join(_argfile_quote(a) for a in args).encode())
        try:
            result = subprocess.run([*jvm, f"@{argfile}"], capture_output=True, text=True)
        finally:
            argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting the KRaft storage failed:\n{result.stdout}{result.stderr}")

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait until the started broker answers metadata requests.

        Raises:
            BrokerError: it exited, or did not answer within ``kafka_start_timeout_s``
                (then it is stopped).
        """

        def ready() -> bool:
            error = self.exited(proc)
            if error is not None:
                raise error
            # A TCP probe first: the metadata client logs loudly while refused.
            return port_in_use(self.host, self.port) and answers_metadata(
                self.address, self.access(), timeout_s=2.0)

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


def _argfile_quote(arg: str) -> str:
    """One argument as a java argument file line: double-quoted, backslashes and quotes
    escaped (the launcher's own syntax, JEP 293)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'

