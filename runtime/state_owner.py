"""Which Kafka cluster a local store belongs to.

A worker's state (RocksDB tables and the changelog offsets Faust persists
beside them) and an edge's store (offers and the next offset per partition)
hold positions in one cluster's topics. Pointed at another cluster (a new
local cluster in the same home, a rebuilt cluster, another
``KAFKA_BOOTSTRAP_SERVERS``), those positions mean nothing: Faust finds a
persisted changelog offset above the new changelog's high watermark and
crashes on every start (``ConsistencyError``), and an edge would resume from
offsets of records it never read. So each store records the id of its
cluster (``cluster.id``, KIP-78) the first time it starts, and a start
against another cluster is refused, with the fix.
"""

from __future__ import annotations

from pathlib import Path

CLUSTER_FILE = "kafka-cluster-id"


class StateOfAnotherCluster(RuntimeError):
    """A local store was made from another Kafka cluster's topics."""


def claim(directory: Path, cluster_id: str | None, what: str) -> None:
    """Record ``cluster_id`` as the owner of the store under ``directory``, or check it.

    ``what`` names the store in the message (``"the worker's state"``). A
    ``cluster_id`` of None (the cluster did not answer) records and checks
    nothing: the next start does.

    Raises:
        StateOfAnotherCluster: the store was made from a cluster with another id.
    """
    if cluster_id is None:
        return
    record = directory / CLUSTER_FILE
    try:
        owner = record.read_text().strip()
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        record.write_text(cluster_id + "\n")
        return
    if owner != cluster_id:
        raise StateOfAnotherCluster(
            f"{what} in {directory} was made from Kafka cluster {owner}, and this cluster "
            f"is {cluster_id}: its offsets do not belong here. Point the settings back at "
            f"cluster {owner}, give this cluster a data directory (or home) of its own, or "
            f"remove {directory} to rebuild it from this cluster's topics")
