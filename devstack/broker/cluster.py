"""A local KRaft cluster of N nodes, each broker and controller, run from the same jars.

Every node combines both roles, so the controllers form an N-voter static
quorum (``controller.quorum.voters``) without extra processes: a separate
controller set would add three JVMs to a 2-core machine that also runs the
whole stack (docs/decisions/0009-local-kafka-cluster.md). All nodes are
formatted with one cluster id. With one node this is the development broker
of devstack/broker/local.py, unchanged.

``start`` launches the stopped nodes together (no node answers before a
majority of controllers runs) and returns once every node reports N brokers
and the quorum has a leader (one node reporting N is not enough: another's
metadata may still lack some, and topics created through it would get too
few replicas); ``stop`` stops every node of the home at once;
``status`` never raises.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from devstack.broker.layout import Node, cluster_layout, formatted_nodes
from devstack.broker.local import BrokerError, LocalBroker, _random_cluster_id, node_pid
from devstack.broker.probe import count_brokers, every_node_sees
from devstack.broker.quorum import QuorumView, newest, read_view
from devstack.broker.security import grant_local_admin
from devstack.ports import port_in_use
from devstack.processes import tail, terminate
from runtime.settings import Settings
from runtime.waiting import TimedOut, wait_until


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    running: bool
    pid: int | None
    address: str


@dataclass(frozen=True)
class ClusterStatus:
    """Each node's state and the quorum's leader (None: no running node knows one)."""

    nodes: tuple[NodeStatus, ...]
    leader: QuorumView | None

    @property
    def all_running(self) -> bool:
        return all(n.running for n in self.nodes)

    @property
    def any_running(self) -> bool:
        return any(n.running for n in self.nodes)

    def describe(self) -> str:
        """One line per node, then the leader's line if any node runs."""
        single = len(self.nodes) == 1
        lines = []
        for n in self.nodes:
            name = "kafka" if single else f"kafka node {n.node_id}"
            lines.append(f"{name} running (pid {n.pid}) on {n.address}" if n.running
                         else f"{name} stopped ({n.address})")
        if self.any_running:
            lines.append(f"quorum leader: node {self.leader.leader_id} (epoch {self.leader.epoch})"
                         if self.leader is not None and self.leader.leader_id is not None
                         else "quorum leader: none")
        return "\n".join(lines)


class LocalCluster:
    """Start, stop and inspect the ``kafka_nodes`` local nodes (``nodes`` overrides it)."""

    def __init__(self, settings: Settings, nodes: int | None = None) -> None:
        self.settings = settings if nodes is None else settings.replace(kafka_nodes=nodes)
        self.layout: list[Node] = cluster_layout(self.settings)
        self.brokers = [LocalBroker(self.settings, node, self.layout) for node in self.layout]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.address for n in self.layout)

    # -- state ---------------------------------------------------------------
    def status(self) -> ClusterStatus:
        """Every node's state and the quorum leader, if a running node knows it; never raises."""
        nodes = tuple(NodeStatus(b.node.node_id, s.running, s.pid, s.address)
                      for b, s in ((b, b.status()) for b in self.brokers))
        running = {n.node_id for n in nodes if n.running}
        view = newest(read_view(b.data_dir) for b in self.brokers if b.node.node_id in running)
        leader = view if view is not None and view.leader_id in running else None
        return ClusterStatus(nodes, leader)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> tuple[ClusterStatus, bool]:
        """Start every stopped node and wait until every node reports all the brokers
        and the quorum has a leader.

        Returns the status and whether this call started a node (False: all
        were running and nothing was done). A node killed earlier is started
        again with its data.

        Raises:
            BrokerError: the home holds a cluster of another number of nodes, a
                port is taken, java is missing, formatting failed, the nodes'
                storage belongs to different clusters, or a node exited or
                the cluster was not ready in ``kafka_start_timeout_s`` (then the
                nodes this call started are stopped).
            JarsUnavailable: the Kafka jars could not be resolved.
        """
        formatted = formatted_nodes(self.settings)
        if formatted is not None and formatted != len(self.layout):
            # Its worker state and edge offsets belong to that cluster: a new one in the
            # same home would find a changelog and offsets that are not its own.
            raise BrokerError(
                f"this home ({self.settings.home}) holds a {formatted}-node cluster, not the "
                f"{len(self.layout)} node(s) asked for: run with POSITIONING_KAFKA_NODES="
                f"{formatted}, give the other cluster a home of its own (POSITIONING_HOME), "
                f"or stop everything and remove {self.settings.home} to start afresh")
        others = [d for d in self._other_dirs() if node_pid(d) is not None]
        if others:
            raise BrokerError(
                f"Kafka nodes of another shape run in this home ({', '.join(map(str, others))}), "
                f"not the {len(self.layout)} node(s) asked for; stop them first "
                "(positioning kafka stop)")
        if len(self.brokers) == 1:
            _, started = self.brokers[0].start()
            return self.status(), started
        current = self.status()
        stopped = [b for b, n in zip(self.brokers, current.nodes, strict=True) if not n.running]
        if not stopped:
            return current, False
        cluster_id = self._cluster_id()
        launched: list[tuple[LocalBroker, subprocess.Popen[bytes]]] = []
        try:
            for broker in stopped:
                broker.prepare(cluster_id)
            for broker in stopped:
                launched.append((broker, broker.launch()))
            self._wait_ready(launched)
            grant_local_admin(self.settings)
        except BaseException:
            self._stop_dirs([b.dir for b, _ in launched], timeout_s=10)
            raise
        return self.status(), True

    def _cluster_id(self) -> str:
        """The id the formatted nodes share, or a new one if none is formatted.

        Raises:
            BrokerError: nodes were formatted for different clusters.
        """
        ids = {i for i in (b.cluster_id() for b in self.brokers) if i is not None}
        if len(ids) > 1:
            raise BrokerError(f"the nodes under {self.settings.kafka_dir} belong to different "
                              f"clusters ({', '.join(sorted(ids))}); stop them and remove that "
                              "folder to start afresh")
        return ids.pop() if ids else _random_cluster_id()

    def _ready(self, launched: Sequence[tuple[LocalBroker, subprocess.Popen[bytes]]]) -> bool:
        for broker, proc in launched:
            error = broker.exited(proc)
            if error is not None:
                raise error
        # A TCP probe first: the metadata client logs loudly while refused.
        if not all(port_in_use(n.host, n.port) for n in self.layout):
            return False
        if self.status().leader is None:
            return False
        access = self.brokers[0].access()
        if count_brokers(self.bootstrap_servers, access, timeout_s=2.0) != len(self.layout):
            return False
        return every_node_sees([n.address for n in self.layout], len(self.layout), access,
                               timeout_s=2.0)

    def _wait_ready(self, launched: Sequence[tuple[LocalBroker, subprocess.Popen[bytes]]]) -> None:
        """Raises BrokerError if a launched node exits or the cluster is not ready in time."""
        timeout_s = self.settings.kafka_start_timeout_s
        try:
            wait_until(lambda: self._ready(launched), timeout_s,
                       f"{len(self.layout)} brokers and a quorum leader", interval_s=0.2)
        except TimedOut:
            logs = "\n".join(f"end of {b.log_file}:\n{tail(b.log_file, 10)}" for b, _ in launched)
            raise BrokerError(f"the cluster was not ready within {timeout_s:.0f}s "
                              f"({self.status().describe()});\n{logs}") from None

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM every node of the home at once (the configured ones, and any other
        ``node-*`` or single-node folder under ``<home>/kafka/`` with a running node),
        wait up to ``timeout_s`` seconds, then SIGKILL the rest.

        Together, not one by one: the last nodes of a quorum stopped one at a
        time lose their majority and wait out the timeout. Returns whether any
        node was running.

        Raises:
            Unkillable: a node survived SIGKILL.
        """
        return self._stop_dirs([*(b.dir for b in self.brokers), *self._other_dirs()], timeout_s)

    def _other_dirs(self) -> list[Path]:
        """Folders of this home's nodes that are not in the layout (another ``kafka_nodes``)
        and have a pid file."""
        root = self.settings.kafka_dir.resolve()
        ours = {b.dir for b in self.brokers}
        return [d for d in [root, *sorted(root.glob("node-*"))]
                if d not in ours and (d / "broker.pid").exists()]

    @staticmethod
    def _stop_dirs(dirs: Sequence[Path], timeout_s: float) -> bool:
        pids = {d: node_pid(d) for d in dirs}
        running = [pid for pid in pids.values() if pid is not None]
        if running:
            with ThreadPoolExecutor(max_workers=len(running)) as pool:
                for done in [pool.submit(terminate, pid, timeout_s) for pid in running]:
                    done.result()  # re-raises Unkillable
        for d in dirs:
            (d / "broker.pid").unlink(missing_ok=True)
        return bool(running)

