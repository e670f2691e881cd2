"""Replication factor and min ISR: defaults from the brokers, explicit settings, refusals."""

from __future__ import annotations

import pytest

from runtime.settings import Settings
from runtime.topics import Durability, NotEnoughBrokers, TopicMismatch, changelog_topic, durability


@pytest.mark.parametrize("nodes,expected", [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)),
                                            (5, (3, 2))])
def test_local_defaults_follow_the_local_nodes(nodes: int, expected: tuple[int, int]) -> None:
    settings = Settings(kafka_nodes=nodes)
    assert durability(settings, brokers=nodes) == Durability(*expected)
    assert durability(settings, brokers=None) == Durability(*expected)


@pytest.mark.parametrize("brokers,expected", [(1, (1, 1)), (2, (2, 1)), (4, (3, 2))])
def test_external_defaults_follow_the_brokers_the_cluster_reports(
        brokers: int, expected: tuple[int, int]) -> None:
    settings = Settings(kafka_bootstrap_servers="k1:9092", kafka_nodes=1)
    assert durability(settings, brokers) == Durability(*expected)


def test_explicit_settings_win() -> None:
    settings = Settings(kafka_nodes=3, replication_factor=2, min_insync_replicas=2)
    assert durability(settings, brokers=3) == Durability(2, 2)
    assert durability(Settings(kafka_nodes=3, min_insync_replicas=1), 3) == Durability(3, 1)


def test_a_replication_factor_above_the_brokers_is_refused_with_the_fix() -> None:
    with pytest.raises(NotEnoughBrokers, match="replication factor 2 needs 2 brokers.*has 1.*"
                                               "POSITIONING_REPLICATION_FACTOR=1"):
        durability(Settings(replication_factor=2), brokers=1)
    # The local default for three nodes, with one broker up.
    with pytest.raises(NotEnoughBrokers, match="replication factor 3"):
        durability(Settings(kafka_nodes=3), brokers=1)


def test_a_min_isr_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValueError, match="POSITIONING_MIN_INSYNC_REPLICAS=3 is above "
                                         "POSITIONING_REPLICATION_FACTOR=2"):
        Settings.from_env({"POSITIONING_REPLICATION_FACTOR": "2",
                           "POSITIONING_MIN_INSYNC_REPLICAS": "3"})
    # Against the default replication factor (1 on one node), at resolution.
    with pytest.raises(TopicMismatch, match="min.insync.replicas 2 is above the replication "
                                            "factor 1"):
        durability(Settings(min_insync_replicas=2), brokers=1)


def test_the_durability_applies_to_settings_and_the_changelog_name() -> None:
    applied = Durability(3, 2).applied_to(Settings())
    assert (applied.replication_factor, applied.min_insync_replicas) == (3, 2)
    assert changelog_topic("w1") == "w1-user-state-changelog"


def test_a_replication_factor_mismatch_names_both_fixes() -> None:
    from runtime.topics import TopicSpec, _problems

    spec = TopicSpec("offers", 3, 2, {"cleanup.policy": "compact", "min.insync.replicas": "1"})
    [problem] = _problems(spec, {1}, {"cleanup.policy": "compact",
                                         "min.insync.replicas": "1"})
    assert problem.startswith("has replication factor 1 (its partitions' replica lists), "
                              "expected 2")
    assert "kafka-reassign-partitions.sh" in problem and "recreate the topic" in problem


def test_tombstones_kept_shorter_than_the_settings_ask_are_refused_with_the_fix() -> None:
    from runtime.topics import _problems, topic_specs

    offers = topic_specs(Settings(), Durability(1, 1))[1]
    live = {"cleanup.policy": "compact", "min.insync.replicas": "1",
            "delete.retention.ms": "1000", "min.compaction.lag.ms": "3600000"}
    [problem] = _problems(offers, {1}, live)
    assert problem.startswith("has delete.retention.ms 1000, below the 86400000")
    assert "revoked offer" in problem and "--add-config delete.retention.ms=86400000" in problem
    assert _problems(offers, {1}, {**live, "delete.retention.ms": "90000000"}) == []


def test_a_tombstone_retention_below_the_ticket_lifetime_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="POSITIONING_OFFERS_TOMBSTONE_RETENTION_S=900 is "
                                              "below the ticket lifetime"):
        Settings(offers_tombstone_retention_s=900, ticket_ttl_s=900)
    assert Settings(offers_tombstone_retention_s=906, ticket_ttl_s=900).ticket_ttl_s == 900
