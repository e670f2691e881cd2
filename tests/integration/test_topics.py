"""`positioning topics` creates the topics once, verifies them, and refuses wrong ones."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import (
    Durability,
    NotEnoughBrokers,
    PartitionsChanged,
    TopicMismatch,
    changelog_topic,
    ensure_topics,
)

pytestmark = pytest.mark.integration


async def _topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        return {entry[0]: entry[1] for res in response.resources for entry in res[4]}
    finally:
        await admin.close()


async def test_topics_are_created_with_their_configs(base_settings: Settings) -> None:
    report = await ensure_topics(base_settings)
    changelog = changelog_topic(base_settings.worker_id)
    assert {r.name: (r.created, r.partitions, r.replication_factor, r.min_insync_replicas)
            for r in report.topics} == {
        base_settings.logins_topic: (True, 3, 1, 1),
        base_settings.offers_topic: (True, 3, 1, 1),
        base_settings.dlq_topic: (True, 3, 1, 1),
        changelog: (True, 3, 1, 1),
    }
    assert report.durability == Durability(1, 1)    # one broker: RF 1, min ISR 1
    offers = await _topic_configs(base_settings, base_settings.offers_topic)
    assert offers["cleanup.policy"] == "compact"
    logins = await _topic_configs(base_settings, base_settings.logins_topic)
    assert logins["cleanup.policy"] == "delete"
    assert logins["min.insync.replicas"] == "1"
    state = await _topic_configs(base_settings, changelog)
    assert state["cleanup.policy"] == "compact" and state["min.insync.replicas"] == "1"


async def test_second_run_changes_nothing(base_settings: Settings) -> None:
    await ensure_topics(base_settings)
    before = await _topic_configs(base_settings, base_settings.offers_topic)
    report = await ensure_topics(base_settings)
    assert [r.created for r in report.topics] == [False, False, False, False]
    assert await _topic_configs(base_settings, base_settings.offers_topic) == before


async def test_an_offers_topic_that_is_not_compacted_is_refused(base_settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(base_settings.offers_topic, 3, 1,
                                            topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()
    with pytest.raises(TopicMismatch, match="cleanup.policy is 'delete', expected 'compact'"):
        await ensure_topics(base_settings)


async def _create(settings: Settings, topic: NewTopic) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        await admin.create_topics([topic])
    finally:
        await admin.close()


async def test_a_replication_factor_above_the_brokers_is_refused(base_settings: Settings) -> None:
    with pytest.raises(NotEnoughBrokers, match="replication factor 2 needs 2 brokers, the "
                                               "cluster at .* has 1"):
        await ensure_topics(base_settings.replace(replication_factor=2))


async def test_a_wrong_min_isr_is_refused_with_the_command_that_fixes_it(
        base_settings: Settings) -> None:
    await _create(base_settings, NewTopic(base_settings.logins_topic, 3, 1,
                                          topic_configs={"min.insync.replicas": "2"}))
    fix = (f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
           f"--entity-name {base_settings.logins_topic} --add-config min.insync.replicas=1")
    with pytest.raises(TopicMismatch, match="has min.insync.replicas 2, expected 1") as caught:
        await ensure_topics(base_settings)
    assert fix in str(caught.value)


async def test_a_logins_partition_count_unlike_the_changelog_is_refused(
        base_settings: Settings) -> None:
    await ensure_topics(base_settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=base_settings.bootstrap_servers,
        **client_options(base_settings, Role.ADMIN))
    await admin.start()
    try:
        await admin.create_partitions({base_settings.logins_topic: NewPartitions(5)})
    finally:
        await admin.close()
    with pytest.raises(PartitionsChanged, match="has 5 partitions but the worker's state "
                                                "changelog .* has 3"):
        await ensure_topics(base_settings)


async def test_a_partitions_setting_unlike_the_logins_topic_is_refused(
        base_settings: Settings) -> None:
    await ensure_topics(base_settings)
    with pytest.raises(PartitionsChanged, match="has 3 partitions, POSITIONING_PARTITIONS "
                                                "says 4.*migrate-state"):
        await ensure_topics(base_settings.replace(partitions=4))
