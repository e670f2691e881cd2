"""`positioning topics` creates the topics once, verifies them, and refuses wrong ones."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runtime.settings import Settings
from runtime.topics import TopicMismatch, ensure_topics

pytestmark = pytest.mark.integration


async def _topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        return {entry[0]: entry[1] for res in response.resources for entry in res[4]}
    finally:
        await admin.close()


async def test_topics_are_created_with_their_configs(base_settings: Settings) -> None:
    reports = await ensure_topics(base_settings)
    assert {r.name: (r.created, r.partitions) for r in reports} == {
        base_settings.logins_topic: (True, 3),
        base_settings.offers_topic: (True, 3),
        base_settings.dlq_topic: (True, 3),
    }
    offers = await _topic_configs(base_settings, base_settings.offers_topic)
    assert offers["cleanup.policy"] == "compact"
    logins = await _topic_configs(base_settings, base_settings.logins_topic)
    assert logins["cleanup.policy"] == "delete"


async def test_second_run_changes_nothing(base_settings: Settings) -> None:
    await ensure_topics(base_settings)
    before = await _topic_configs(base_settings, base_settings.offers_topic)
    reports = await ensure_topics(base_settings)
    assert [r.created for r in reports] == [False, False, False]
    assert await _topic_configs(base_settings, base_settings.offers_topic) == before


async def test_an_offers_topic_that_is_not_compacted_is_refused(base_settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=base_settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(base_settings.offers_topic, 3, 1,
                                            topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()
    with pytest.raises(TopicMismatch, match="cleanup.policy is 'delete', expected 'compact'"):
        await ensure_topics(base_settings)
