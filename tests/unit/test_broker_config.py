"""The local Kafka nodes' configuration, ports and folders, and the compose files that mirror it."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.broker.cluster import ClusterStatus, NodeStatus
from devstack.broker.config import (
    min_insync_replicas,
    replication_factor,
    server_properties,
    with_overrides,
)
from devstack.broker.layout import cluster_layout, quorum_voters
from devstack.broker.local import LocalBroker
from devstack.broker.quorum import QuorumView, newest, quorum_state_file, read_view
from devstack.ports import free_port_run
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("nodes,rf,isr", [(1, 1, 1), (2, 2, 1), (3, 3, 2), (4, 3, 2), (7, 3, 2)])
def test_replication_follows_the_cluster_size(nodes: int, rf: int, isr: int) -> None:
    assert (replication_factor(nodes), min_insync_replicas(nodes)) == (rf, isr)
    layout = cluster_layout(Settings(kafka_nodes=nodes))
    props = server_properties(layout[0], layout)
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == str(rf), key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr",
                "share.coordinator.state.topic.min.isr"):
        assert props[key] == str(isr), key


def test_one_node_keeps_the_single_broker_layout(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_listen="127.0.0.1:19092")
    [node] = cluster_layout(settings)
    assert (node.node_id, node.port, node.controller_port) == (1, 19092, 19093)
    assert node.dir == (tmp_path / "kafka").resolve()
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert server_properties(node, [node])["controller.quorum.voters"] == "1@127.0.0.1:19093"


def test_node_i_gets_its_own_folder_and_two_ports_from_the_base(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_nodes=3)
    layout = cluster_layout(settings)
    assert [(n.node_id, n.port, n.controller_port) for n in layout] == [
        (1, 9092, 9093), (2, 9094, 9095), (3, 9096, 9097)]
    assert [n.dir for n in layout] == [(tmp_path / "kafka" / f"node-{i}").resolve()
                                       for i in (1, 2, 3)]
    assert len({n.pid_file for n in layout} | {n.log_file for n in layout}) == 6
    voters = "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert quorum_voters(layout) == voters
    for node in layout:
        props = server_properties(node, layout)
        assert props["node.id"] == str(node.node_id)
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == (f"PLAINTEXT://127.0.0.1:{node.port},"
                                      f"CONTROLLER://127.0.0.1:{node.controller_port}")
        assert props["log.dirs"] == str(node.data_dir)


def test_bootstrap_servers_list_every_local_node_unless_a_cluster_is_configured() -> None:
    local = Settings(kafka_nodes=3, kafka_listen="127.0.0.1:9200")
    assert local.bootstrap_servers == "127.0.0.1:9200,127.0.0.1:9202,127.0.0.1:9204"
    external = local.replace(kafka_bootstrap_servers="k1:9092")
    assert external.bootstrap_servers == "k1:9092"
    assert Settings.from_env({"POSITIONING_KAFKA_NODES": "2"}).bootstrap_servers == (
        "127.0.0.1:9092,127.0.0.1:9094")
    with pytest.raises(ValueError, match="POSITIONING_KAFKA_NODES"):
        Settings.from_env({"POSITIONING_KAFKA_NODES": "0"})


def test_heap_is_smaller_per_node_in_a_cluster_unless_set() -> None:
    assert Settings().kafka_node_heap == "512m"
    assert Settings(kafka_nodes=3).kafka_node_heap == "384m"
    assert Settings(kafka_nodes=3, kafka_heap="256m").kafka_node_heap == "256m"


def test_server_properties_from_the_settings_replace_and_add_keys(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_listen="127.0.0.1:19092",
                        kafka_server_properties="num.io.threads=2, log.segment.bytes = 1024")
    [node] = cluster_layout(settings)
    lines = LocalBroker(settings, node).server_properties().splitlines()
    assert "num.io.threads=2" in lines
    assert "log.segment.bytes=1024" in lines
    assert sum(line.startswith("log.segment.bytes=") for line in lines) == 1
    with pytest.raises(ValueError, match="key=value"):
        Settings(kafka_server_properties="num.io.threads")
    with pytest.raises(ValueError, match="key=value"):
        with_overrides({}, ["=2"])


def test_free_port_run_finds_consecutive_free_ports() -> None:
    base = free_port_run(6)
    for port in range(base, base + 6):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if taken


# -- the compose files -----------------------------------------------------------

def _without_hosts(value: str) -> str:
    """Listener and voter lists compared by port: ``PLAINTEXT://h:1`` -> ``PLAINTEXT://:1``,
    ``1@h:2`` -> ``1@:2`` (a container binds every interface, the local node 127.0.0.1)."""
    return re.sub(r"(//|@)[^:,]*:", r"\1:", value)


def _compose_properties(env: dict[str, Any]) -> dict[str, str]:
    """The broker properties the apache/kafka image derives from ``KAFKA_*`` variables."""
    return {key[len("KAFKA_"):].lower().replace("_", "."): str(value)
            for key, value in env.items()
            if key.startswith("KAFKA_") and key != "KAFKA_HEAP_OPTS"}


@pytest.mark.parametrize("compose,nodes", [("docker-compose.kafka.yml", 1),
                                           ("docker-compose.kafka-3.yml", 3)])
def test_compose_files_match_the_local_nodes(compose: str, nodes: int) -> None:
    services = yaml.safe_load((ROOT / compose).read_text())["services"]
    settings = Settings(kafka_nodes=nodes)
    layout = cluster_layout(settings)
    assert len(services) == nodes
    cluster_ids = set()
    for node, service in zip(layout, services.values(), strict=True):
        env = service["environment"]
        cluster_ids.add(env.get("CLUSTER_ID"))
        heap = settings.kafka_node_heap
        assert env["KAFKA_HEAP_OPTS"] == f"-Xmx{heap} -Xms{heap}"
        local = server_properties(node, layout)
        del local["log.dirs"]  # the image's own folder
        composed = _compose_properties(env)
        assert set(composed) == set(local), compose
        for key, value in local.items():
            assert _without_hosts(composed[key]) == _without_hosts(value), (compose, key)
    assert len(cluster_ids) == 1, "the nodes must share one CLUSTER_ID"


# -- the quorum leader, from the nodes' files -------------------------------------

def _write_state(data_dir: Path, leader: int, epoch: int) -> None:
    path = quorum_state_file(data_dir)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"clusterId": "", "leaderId": leader, "leaderEpoch": epoch,
                                "votedId": -1, "appliedOffset": 0, "data_version": 0}))


def test_the_newest_view_of_the_quorum_wins(tmp_path: Path) -> None:
    _write_state(tmp_path / "a", leader=1, epoch=2)
    _write_state(tmp_path / "b", leader=-1, epoch=3)   # an election in progress
    _write_state(tmp_path / "c", leader=2, epoch=3)
    views = [read_view(tmp_path / d) for d in "abc"]
    assert views[1] == QuorumView(None, 3)
    assert newest(views) == QuorumView(2, 3)
    assert newest([views[0], views[1]]) == QuorumView(None, 3)
    assert read_view(tmp_path / "missing") is None
    assert newest([None]) is None


def test_status_shows_each_node_and_the_leader() -> None:
    nodes = (NodeStatus(1, True, 11, "h:1"), NodeStatus(2, False, None, "h:3"))
    text = ClusterStatus(nodes, QuorumView(1, 4)).describe()
    assert text.splitlines() == ["kafka node 1 running (pid 11) on h:1",
                                 "kafka node 2 stopped (h:3)",
                                 "quorum leader: node 1 (epoch 4)"]
    assert not ClusterStatus(nodes, None).all_running
    assert ClusterStatus(nodes, None).describe().endswith("quorum leader: none")
    assert ClusterStatus((NodeStatus(1, False, None, "h:1"),), None).describe() == "kafka stopped (h:1)"


def test_a_cluster_of_another_shape_running_in_the_home_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    from devstack.broker.cluster import LocalCluster
    from devstack.broker.local import BrokerError
    from devstack.processes import write_pid

    single = cluster_layout(Settings(home=tmp_path))[0]
    single.dir.mkdir(parents=True)
    single.config_file.write_text("")
    # A stand-in for the single-node broker: a process whose command line names its config.
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 "kafka.Kafka", str(single.config_file)])
    try:
        write_pid(single.pid_file, stand_in.pid)
        with pytest.raises(BrokerError, match="another shape"):
            LocalCluster(Settings(home=tmp_path), nodes=3).start()
        assert LocalCluster(Settings(home=tmp_path), nodes=3).stop(timeout_s=5)
        assert stand_in.wait(timeout=10) is not None
    finally:
        stand_in.kill()
        stand_in.wait()


def test_nodes_of_a_cluster_use_the_quick_compiler_and_a_single_node_both(tmp_path: Path) -> None:
    """Three JVMs warming up on a small machine slowed replicated writes (decision 18)."""
    settings = Settings(home=tmp_path, kafka_nodes=3)
    layout = cluster_layout(settings)
    assert all(LocalBroker(settings, node, layout)._jit_flags() == ["-XX:TieredStopAtLevel=1"]
               for node in layout)
    assert LocalBroker(Settings(home=tmp_path))._jit_flags() == []


def test_a_home_holds_one_cluster_and_a_start_of_another_size_is_refused(tmp_path: Path) -> None:
    """The worker state of a 1-node home found a changelog offset past a new 3-node
    cluster's high watermark and crash-looped: the start is refused before that."""
    from devstack.broker.cluster import LocalCluster
    from devstack.broker.layout import formatted_nodes
    from devstack.broker.local import BrokerError

    settings = Settings(home=tmp_path)
    assert formatted_nodes(settings) is None
    for node in cluster_layout(settings.replace(kafka_nodes=3)):
        node.data_dir.mkdir(parents=True)
        (node.data_dir / "meta.properties").write_text("cluster.id=abc\nnode.id=1\n")
    assert formatted_nodes(settings) == 3
    with pytest.raises(BrokerError, match="holds a 3-node cluster.*POSITIONING_KAFKA_NODES=3"):
        LocalCluster(settings).start()
