"""Where each node of the local KRaft cluster lives: its id, folder and ports.

One node keeps the layout of the single development broker, ``<home>/kafka/``
on ``kafka_listen`` and its controller port. With N nodes, node i (1..N) gets
``<home>/kafka/node-<i>/``, listens for clients on ``kafka_listen``'s port +
2·(i−1) and for its controller on the next port, so node 1 keeps 9092/9093
and node 3 has 9096/9097. Every folder holds ``server.properties``,
``data/`` (log dirs and KRaft metadata), ``broker.log`` and ``broker.pid``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.settings import Settings


@dataclass(frozen=True)
class Node:
    """One local Kafka node: broker and controller in one JVM."""

    node_id: int
    dir: Path
    host: str
    port: int              # the client (PLAINTEXT) listener
    controller_port: int   # the KRaft controller listener

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "broker.log"


def cluster_layout(settings: Settings) -> list[Node]:
    """The ``settings.kafka_nodes`` nodes of the local cluster, node 1 first (see the module doc)."""
    root = settings.kafka_dir.resolve()
    host, port = settings.kafka_host_port
    controller = settings.kafka_controller_port or port + 1
    if settings.kafka_nodes == 1:
        return [Node(1, root, host, port, controller)]
    return [Node(i + 1, root / f"node-{i + 1}", host, port + 2 * i, controller + 2 * i)
            for i in range(settings.kafka_nodes)]


def quorum_voters(nodes: Sequence[Node]) -> str:
    """``controller.quorum.voters``: every node's ``id@host:controller_port``."""
    return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)


def formatted_nodes(settings: Settings) -> int | None:
    """How many nodes the home's local cluster has on disk: the nodes whose storage is
    formatted (``meta.properties``); None if none is.

    A home holds one cluster, and its worker state and edge offsets belong to
    it, so the number on disk is the home's, whatever ``kafka_nodes`` says now.
    """
    root = settings.kafka_dir.resolve()
    nodes = len(list(root.glob("node-*/data/meta.properties")))
    if nodes:
        return nodes
    return 1 if (root / "data" / "meta.properties").exists() else None
