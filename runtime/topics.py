"""Creating and verifying the project's topics, idempotently, and refusing wrong ones.

``logins`` is keyed by user id, so a user's logins stay ordered and the
worker's per-user state needs no repartition. ``offers`` is compacted and
keyed by ticket: the latest value per ticket is the offer, a tombstone
removes it. ``logins.dlq`` keeps what could not be processed. The worker's
state changelog (``<worker_id>-user-state-changelog``, Faust's internal
topic) is created here too, so it gets the same durability and is checked
like the others.

Every topic has the replication factor and ``min.insync.replicas`` of
``Durability`` (``durability()``: the settings, else defaults from the
brokers). Existing topics are verified against it, and the changelog must
have as many partitions as ``logins``: Faust writes a user's state to the
partition of the login, so a different count sends every login to the
dead-letter topic (``PartitionsMismatch``), and ``logins`` must have
``partitions``: its count cannot change in place (docs/operations.md has
the procedure). ``offers`` and ``logins.dlq`` keep the count they were
created with (altering ``offers``' in place would move tickets, and a
tombstone could land in another partition than its offer). Each refusal
says the reason and the command or procedure that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from runtime.acl_propagation import through_propagation
from runtime.kafka_security import KafkaAccess, Role, kafka_access
from runtime.settings import Settings, env_var
from runtime.waiting import wait_until_async

USER_STATE_TABLE = "user-state"
"""The name of the worker's Faust table of per-user state."""

OPERATIONS_DOC = "docs/operations.md"


class TopicCreationRefused(RuntimeError):
    """The cluster refused to create a topic for want of a right (an authorization error)."""


class TopicMismatch(RuntimeError):
    """The topics are not, or cannot be made, what the system relies on; the message says why."""


class NotEnoughBrokers(TopicMismatch):
    """The replication factor asked for is above the brokers the cluster has."""


class PartitionsChanged(TopicMismatch):
    """``logins`` and the worker's state changelog differ in partition count."""


def changelog_topic(worker_id: str) -> str:
    """The Kafka topic Faust keeps the worker's user-state table in."""
    return f"{worker_id}-{USER_STATE_TABLE}-changelog"


@dataclass(frozen=True)
class Durability:
    """How many copies of every record the topics keep, and how many must ack a write."""

    replication_factor: int
    min_insync_replicas: int

    def applied_to(self, settings: Settings) -> Settings:
        """``settings`` with these values set explicitly (for the worker's Faust app)."""
        return settings.replace(replication_factor=self.replication_factor,
                                min_insync_replicas=self.min_insync_replicas)


def durability(settings: Settings, brokers: int | None) -> Durability:
    """The replication factor and min ISR for ``settings`` on a cluster of ``brokers``.

    Defaults: RF = min(3, nodes), nodes being ``kafka_nodes`` for the local
    cluster and ``brokers`` for an external one; min ISR = max(1, RF - 1).
    Explicit settings win. ``brokers`` None (not asked) skips the check
    against the cluster and takes ``kafka_nodes`` for an external cluster too.

    Raises:
        NotEnoughBrokers: the replication factor is above ``brokers``.
        TopicMismatch: the min ISR is above the replication factor.
    """
    nodes = brokers if settings.uses_external_kafka and brokers else settings.kafka_nodes
    rf = settings.replication_factor or min(3, nodes)
    isr = settings.min_insync_replicas or max(1, rf - 1)
    if brokers is not None and rf > brokers:
        raise NotEnoughBrokers(
            f"replication factor {rf} needs {rf} brokers, the cluster at "
            f"{settings.bootstrap_servers} has {brokers}: start more brokers "
            f"({env_var('kafka_nodes')}) or set {env_var('replication_factor')}={brokers}")
    if isr > rf:
        raise TopicMismatch(
            f"min.insync.replicas {isr} is above the replication factor {rf}: no write "
            f"could ever be acknowledged; set {env_var('min_insync_replicas')} to at most {rf}")
    return Durability(rf, isr)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings, wanted: Durability) -> list[TopicSpec]:
    """The three topics of the system (not the changelog, whose count follows ``logins``)."""
    rf = wanted.replication_factor
    n = settings.partitions
    isr = {"min.insync.replicas": str(wanted.min_insync_replicas)}
    return [
        TopicSpec(settings.logins_topic, n, rf, {"cleanup.policy": "delete", **isr}),
        TopicSpec(
            settings.offers_topic, n, rf,
            {
                "cleanup.policy": "compact",
                # Tombstones outlive the offers they end (docs/security.md, "Revocations").
                "delete.retention.ms": str(settings.offers_tombstone_retention_s * 1000),
                # The worker's repairs must land before a record is compacted
                # (pipeline/offer_repair.py).
                "min.compaction.lag.ms": str(settings.offers_compaction_lag_s * 1000),
                "segment.ms": str(3600 * 1000),
                **isr,
            },
        ),
        TopicSpec(settings.dlq_topic, n, rf, {"cleanup.policy": "delete",
                                              "retention.ms": str(14 * 24 * 3600 * 1000),
                                              **isr}),
    ]


def changelog_spec(settings: Settings, wanted: Durability, partitions: int) -> TopicSpec:
    """The worker's state changelog as Faust would declare it, with ``partitions`` of logins."""
    return TopicSpec(changelog_topic(settings.worker_id), partitions,
                     wanted.replication_factor,
                     {"cleanup.policy": "compact",
                      "min.insync.replicas": str(wanted.min_insync_replicas)})


@dataclass(frozen=True)
class TopicReport:
    name: str
    created: bool
    partitions: int
    replication_factor: int
    min_insync_replicas: int


@dataclass(frozen=True)
class TopicsReport:
    """What ``ensure_topics`` found or made: each topic, and the durability they all have."""

    topics: list[TopicReport]
    durability: Durability
    cluster_id: str | None = None   # the cluster's id (KIP-78), as it answered


async def ensure_topics(settings: Settings, timeout_s: float = 30.0,
                        access: KafkaAccess | None = None) -> TopicsReport:
    """Create missing topics (the worker's changelog included) and verify existing ones,
    connecting as ``access`` (default: the admin role; another role can only verify).

    Raises:
        NotEnoughBrokers: the replication factor is above the cluster's brokers.
        PartitionsChanged: ``logins`` and the state changelog differ in partitions.
        TopicMismatch: a topic's cleanup policy, replication factor or min ISR is
            wrong, or the settings ask for an impossible min ISR.
        RuntimeError: creating a topic failed, or it got no leaders in ``timeout_s``.
        aiokafka.errors.KafkaError: the cluster did not answer.
        KafkaAccessError: the admin role's credentials are not configured.
    """
    access = access or kafka_access(settings, Role.ADMIN)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
        **access.aiokafka_options(),
    )
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        wanted = durability(settings, len(cluster["brokers"]))
        specs = topic_specs(settings, wanted)
        created = await _create_missing(admin, specs)
        reports = []
        for spec in specs:
            reports.append(await _check(admin, spec, spec.name in created, timeout_s))
        logins_partitions = reports[0].partitions
        changelog = changelog_spec(settings, wanted, logins_partitions)
        created = await _create_missing(admin, [changelog])
        report = await _check(admin, changelog, changelog.name in created, timeout_s)
        if report.partitions != logins_partitions:
            raise PartitionsChanged(partitions_changed_message(
                settings, logins_partitions, changelog.name, report.partitions))
        if logins_partitions != settings.partitions:
            raise PartitionsChanged(
                f"topic {settings.logins_topic!r} has {logins_partitions} partitions, "
                f"{env_var('partitions')} says {settings.partitions}: a logins topic in use "
                f"keeps its partitions (the worker's state is laid out by them). Set "
                f"{env_var('partitions')}={logins_partitions}, or move to a new topic "
                f"generation with `positioning migrate-state` ({OPERATIONS_DOC}, 'Changing "
                f"the number of partitions')")
        reports.append(report)
        return TopicsReport(reports, wanted, cluster.get("cluster_id"))
    finally:
        await admin.close()


def partitions_changed_message(settings: Settings, logins_partitions: int, changelog: str,
                               changelog_partitions: int) -> str:
    """Why a partition change is refused, and the procedure that makes it."""
    return (
        f"topic {settings.logins_topic!r} has {logins_partitions} partitions but the worker's "
        f"state changelog {changelog!r} has {changelog_partitions}: the worker would "
        f"dead-letter every login (PartitionsMismatch). "
        f"The partitions of a logins topic in use cannot change in place. Either put "
        f"{settings.logins_topic!r} back to {changelog_partitions} partitions (recreate it if "
        f"it holds nothing unprocessed) or move to a new topic generation: a new "
        f"{env_var('logins_topic')} with {env_var('partitions')}={logins_partitions}, a new "
        f"{env_var('worker_id')}, then `positioning migrate-state --from-logins-topic ... "
        f"--from-worker-id ...` (procedure: {OPERATIONS_DOC}, 'Changing the number of "
        f"partitions')")


async def _create_missing(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> set[str]:
    """Create the topics of ``specs`` that do not exist; the names created now. A refusal
    for want of a right is retried while a fresh grant reaches every broker
    (runtime/acl_propagation.py), then raised as TopicCreationRefused."""
    created: set[str] = set()
    await through_propagation(lambda: _create_once(admin, specs, created), "creating topics",
                              lambda e: isinstance(e, TopicCreationRefused))
    return created


async def _create_once(admin: AIOKafkaAdminClient, specs: list[TopicSpec],
                       created: set[str]) -> set[str]:
    """One CreateTopics for the topics of ``specs`` not there yet, adding to ``created``."""
    existing = set(await admin.list_topics())
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return created
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs)
         for s in missing]
    )
    for name, code, *rest in response.topic_errors:
        error = for_code(code)
        if code == 0:
            created.add(name)
        elif error is not TopicAlreadyExistsError:
            message = rest[0] if rest else ""
            kind = (TopicCreationRefused if error in (TopicAuthorizationFailedError,
                                                      ClusterAuthorizationFailedError)
                    else RuntimeError)
            raise kind(f"creating topic {name!r} failed: {error.__name__} {message}")
    return created


async def _check(admin: AIOKafkaAdminClient, spec: TopicSpec, created: bool,
                 timeout_s: float) -> TopicReport:
    """Wait for the topic's leaders, then verify it against ``spec`` (not its partition
    count: ``ensure_topics`` checks that of ``logins`` and the changelog; ``offers`` and
    ``logins.dlq`` keep the count they were created with)."""
    partitions = await _wait_partitions(admin, spec.name, timeout_s)
    replicas = {len(cast(list[int], p["replicas"])) for p in partitions}
    live = await _configs(admin, spec.name, timeout_s)
    problems = _problems(spec, replicas, live)
    if problems:
        raise TopicMismatch(f"topic {spec.name!r} " + "; ".join(problems))
    return TopicReport(spec.name, created, len(partitions), spec.replication_factor,
                       int(spec.configs["min.insync.replicas"]))


def _problems(spec: TopicSpec, replicas: set[int], live: dict[str, str | None]) -> list[str]:
    """Each difference between a live topic and its spec that matters, with its fix."""
    problems = []
    policy = live.get("cleanup.policy")
    if policy != spec.configs["cleanup.policy"]:
        problems.append(f"cleanup.policy is {policy!r}, expected "
                        f"{spec.configs['cleanup.policy']!r} (delete and recreate it, or point "
                        f"the POSITIONING_*_TOPIC settings elsewhere)")
    if replicas != {spec.replication_factor}:
        have = "/".join(str(r) for r in sorted(replicas))
        problems.append(
            f"has replication factor {have} (its partitions' replica lists), expected "
            f"{spec.replication_factor}: raise it without losing data with a reassignment "
            f"(kafka-reassign-partitions.sh --bootstrap-server <broker> --execute "
            f"--reassignment-json-file <plan>, the plan listing {spec.replication_factor} "
            f"brokers for every partition), or recreate the topic if its data may go; or set "
            f"{env_var('replication_factor')}={have} to accept it")
    isr = live.get("min.insync.replicas")
    wanted_isr = spec.configs["min.insync.replicas"]
    if isr != wanted_isr:
        problems.append(
            f"has min.insync.replicas {isr}, expected {wanted_isr}: kafka-configs.sh "
            f"--bootstrap-server <broker> --alter --entity-type topics --entity-name "
            f"{spec.name} --add-config min.insync.replicas={wanted_isr}")
    for key, why in _AT_LEAST.items():
        wanted = spec.configs.get(key)
        held = live.get(key)
        if wanted is not None and (held is None or int(held) < int(wanted)):
            problems.append(
                f"has {key} {held}, below the {wanted} the settings ask ({why}): "
                f"kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
                f"--entity-name {spec.name} --add-config {key}={wanted}")
    return problems


_AT_LEAST = {
    # Tombstones must outlive the offers they end, and the worker's repairs must land before
    # compaction (docs/security.md, "Revocations" and "Edges agree").
    "delete.retention.ms": "an edge away for longer could serve a revoked offer",
    "min.compaction.lag.ms": "the worker's repairs of offers may come too late",
}
_CHECKED_CONFIGS = ("cleanup.policy", "min.insync.replicas", *_AT_LEAST)


async def _configs(admin: AIOKafkaAdminClient, name: str,
                   timeout_s: float) -> dict[str, str | None]:
    """The topic's effective ``_CHECKED_CONFIGS`` (its own, else the broker's).

    On a cluster, the broker asked may not know a topic created a moment ago
    (it answers with an error code and no entries): asked again until it does.

    Raises:
        TimedOut: no broker described the topic within ``timeout_s`` seconds.
    """
    async def described() -> dict[str, str | None] | None:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name,
                            configs={key: None for key in _CHECKED_CONFIGS})]
        )
        live: dict[str, str | None] = {}
        for error_code, _message, _type, _name, entries in response.resources:
            if error_code != 0:
                return None
            for entry in entries:
                live[entry[0]] = entry[1]
        return live if "cleanup.policy" in live else None

    return await wait_until_async(described, timeout_s, f"the configuration of topic {name!r}")


async def _wait_partitions(admin: AIOKafkaAdminClient, name: str,
                           timeout_s: float) -> list[dict[str, object]]:
    """The topic's partitions once its metadata shows them all with leaders.

    Raises:
        TimedOut: not every partition had a leader within ``timeout_s`` seconds.
    """
    async def led() -> list[dict[str, object]] | None:
        (topic,) = await admin.describe_topics([name])
        partitions = topic["partitions"]
        if topic["error_code"] == 0 and partitions and all(p["leader"] >= 0 for p in partitions):
            return list(partitions)
        return None

    return await wait_until_async(led, timeout_s, f"leaders for every partition of {name!r}")
