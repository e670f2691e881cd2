"""Creating and verifying the project's topics, idempotently.

``logins`` is keyed by user id, so a user's logins stay ordered and the
worker's per-user state needs no repartition. ``offers`` is compacted and
keyed by ticket: the latest value per ticket is the offer, a tombstone
removes it. ``logins.dlq`` keeps what could not be processed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from runtime.settings import Settings


class TopicMismatch(RuntimeError):
    """An existing topic does not have the configuration the system relies on."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    rf = settings.replication_factor
    n = settings.partitions
    return [
        TopicSpec(settings.logins_topic, n, rf, {"cleanup.policy": "delete"}),
        TopicSpec(
            settings.offers_topic, n, rf,
            {
                "cleanup.policy": "compact",
                # Tombstones stay long enough for a lagging edge to see them.
                "delete.retention.ms": str(24 * 3600 * 1000),
                "min.compaction.lag.ms": "0",
                "segment.ms": str(3600 * 1000),
            },
        ),
        TopicSpec(settings.dlq_topic, n, rf, {"cleanup.policy": "delete",
                                              "retention.ms": str(14 * 24 * 3600 * 1000)}),
    ]


@dataclass(frozen=True)
class TopicReport:
    name: str
    created: bool
    partitions: int


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[TopicReport]:
    """Create missing topics and check existing ones; raise TopicMismatch if wrong."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
    )
    await admin.start()
    try:
        specs = topic_specs(settings)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: set[str] = set()
        if missing:
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs)
                 for s in missing]
            )
            for name, code, *rest in response.topic_errors:
                if code == 0:
                    created.add(name)
                elif for_code(code) is not TopicAlreadyExistsError:
                    message = rest[0] if rest else ""
                    raise RuntimeError(f"creating topic {name!r} failed: "
                                       f"{for_code(code).__name__} {message}")
        reports = []
        for spec in specs:
            partitions = await _wait_partitions(admin, spec.name, timeout_s)
            await _verify(admin, spec, partitions)
            reports.append(TopicReport(spec.name, spec.name in created, partitions))
        return reports
    finally:
        await admin.close()


async def _wait_partitions(admin: AIOKafkaAdminClient, name: str, timeout_s: float) -> int:
    """Partition count once the topic's metadata shows it with leaders."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        (topic,) = await admin.describe_topics([name])
        partitions = topic["partitions"]
        if topic["error_code"] == 0 and partitions and all(p["leader"] >= 0 for p in partitions):
            return len(partitions)
        if loop.time() > deadline:
            raise RuntimeError(f"topic {name!r} has no leaders after {timeout_s}s")
        await asyncio.sleep(0.1)


async def _verify(admin: AIOKafkaAdminClient, spec: TopicSpec, partitions: int) -> None:
    """Compare the live topic to its spec; explain every difference that matters."""
    problems = []
    if partitions < spec.partitions:
        problems.append(f"has {partitions} partitions, expected at least {spec.partitions}")
    (response,) = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs={"cleanup.policy": None})]
    )
    live = {}
    for resource in response.resources:
        for entry in resource[4]:
            live[entry[0]] = entry[1]
    policy = live.get("cleanup.policy")
    if policy != spec.configs["cleanup.policy"]:
        problems.append(f"cleanup.policy is {policy!r}, expected {spec.configs['cleanup.policy']!r}")
    if problems:
        raise TopicMismatch(
            f"topic {spec.name!r} " + "; ".join(problems)
            + ". Delete and recreate it, or point the POSITIONING_*_TOPIC settings elsewhere."
        )
