"""A local store records the Kafka cluster it was made from, and refuses another."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.state_owner import CLUSTER_FILE, StateOfAnotherCluster, claim


def test_the_first_start_records_the_cluster_and_later_ones_check_it(tmp_path: Path) -> None:
    store = tmp_path / "worker"
    claim(store, "cluster-a", "the worker's state")
    assert (store / CLUSTER_FILE).read_text() == "cluster-a\n"
    claim(store, "cluster-a", "the worker's state")   # the same cluster: nothing to say
    with pytest.raises(StateOfAnotherCluster,
                       match=r"the worker's state in .* was made from Kafka cluster cluster-a, "
                             r"and this cluster is cluster-b.*remove"):
        claim(store, "cluster-b", "the worker's state")
    assert (store / CLUSTER_FILE).read_text() == "cluster-a\n"


def test_a_cluster_that_did_not_answer_records_nothing(tmp_path: Path) -> None:
    claim(tmp_path / "edge", None, "this edge's store")
    assert not (tmp_path / "edge").exists()
