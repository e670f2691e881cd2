"""The Kafka plane lets no one in: TLS, SCRAM, one principal per role, least privilege.

Against the session's secured broker (tests/conftest.py): the ACL matrix
(every principal x every topic and group x produce, consume, create, delete,
alter), the door refusing plaintext, no credentials, a wrong password and a
certificate from another CA, and a principal with more than its role refused
at a component's start and by ``positioning topics``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
)
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from pydantic import SecretStr

from devstack.broker.security import add_users, new_ca
from runtime.acls import AclMismatch, admin_client, check_own_access, ensure_principals
from runtime.kafka_preflight import KafkaRefused, check_connection
from runtime.kafka_security import KafkaAccess, Role, kafka_access
from runtime.settings import Settings
from runtime.topics import changelog_topic, ensure_topics
from tests.conftest import unique_settings

pytestmark = pytest.mark.integration

ALLOWED, DENIED = "allowed", "denied"
OPERATIONS = ("produce", "consume", "create", "alter", "delete")

# What each role may do, written out from the role table of docs/security.md (not
# computed from runtime/acls.py, which this checks). Topics: L logins, O offers,
# D logins.dlq, C the worker's changelog; groups: W the worker's group, R the
# replay group. Letters: p produce, c consume, n create, a alter, d delete.
TOPIC_MATRIX: dict[Role, dict[str, str]] = {
    Role.ADMIN: {"L": "pcnad", "O": "pcnad", "D": "pcnad", "C": "pcnad"},
    Role.OPS: {"L": "p", "O": "", "D": "c", "C": ""},
    Role.ORIGIN: {"L": "p", "O": "", "D": "", "C": ""},
    Role.WORKER: {"L": "c", "O": "pc", "D": "p", "C": "pcn"},
    Role.EDGE: {"L": "", "O": "c", "D": "", "C": ""},
}
# Groups: c = commit an offset of `logins` in it (READ on the group and the topic),
# s = see its offsets (DESCRIBE).
GROUP_MATRIX: dict[Role, dict[str, str]] = {
    Role.ADMIN: {"W": "cs", "R": "cs"},
    Role.OPS: {"W": "s", "R": "s"},   # ops reads no logins, so commits nothing
    Role.ORIGIN: {"W": "", "R": ""},
    Role.WORKER: {"W": "cs", "R": ""},
    Role.EDGE: {"W": "", "R": ""},
}
LETTER = {"produce": "p", "consume": "c", "create": "n", "alter": "a", "delete": "d"}


def _topics(settings: Settings) -> dict[str, str]:
    return {"L": settings.logins_topic, "O": settings.offers_topic, "D": settings.dlq_topic,
            "C": changelog_topic(settings.worker_id)}


def _groups(settings: Settings) -> dict[str, str]:
    return {"W": settings.worker_id, "R": f"{settings.worker_id}.dlq-replay"}


async def _produce(access: KafkaAccess, settings: Settings, topic: str) -> str:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                request_timeout_ms=10_000, **access.aiokafka_options())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"matrix", key=b"matrix-key-000000000000")
        return ALLOWED
    except TopicAuthorizationFailedError:
        return DENIED
    finally:
        await producer.stop()


def _consume(access: KafkaAccess, settings: Settings, topic: str) -> str:
    """Fetch partition 0 from the beginning (librdkafka: aiokafka retries an unauthorized
    topic's offsets forever instead of failing). A topic the principal may not even
    describe is refused before any fetch (READ implies DESCRIBE), and librdkafka then
    only waits for it to appear: that refusal is the answer."""
    admin = admin_client(access, settings.bootstrap_servers, 15)
    (described,) = admin.describe_topics(TopicCollection([topic]), request_timeout=15).values()
    try:
        described.result(timeout=20)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return DENIED
        raise
    errors: list[int] = []
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                         "group.id": f"{settings.worker_id}.matrix-probe",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "topic.metadata.refresh.interval.ms": 500,
                         "error_cb": lambda error: errors.append(error.code()),
                         "log_level": 0, **access.librdkafka_config()})
    try:
        consumer.assign([ConfluentPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if KafkaError.TOPIC_AUTHORIZATION_FAILED in errors:
                return DENIED
            if message is None:
                continue
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                return ALLOWED
            if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                return DENIED
        raise AssertionError(f"no answer fetching {topic} as {access.principal}")
    finally:
        consumer.close()


def _admin_call(access: KafkaAccess, settings: Settings, op: str, topic: str) -> str:
    admin = admin_client(access, settings.bootstrap_servers, 15)
    if op == "create":
        futures = admin.create_topics([NewTopic(topic, 1, 1)], validate_only=True,
                                      request_timeout=15)
        ok_codes = {KafkaError.TOPIC_ALREADY_EXISTS}
    elif op == "alter":
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("retention.bytes", "-1",
                        incremental_operation=AlterConfigOpType.SET)])
        futures = admin.incremental_alter_configs([resource], validate_only=True,
                                                  request_timeout=15)
        ok_codes = set()
    else:
        futures = admin.delete_topics([topic], request_timeout=15)
        ok_codes = set()
    (future,) = futures.values()
    try:
        future.result(timeout=20)
        return ALLOWED
    except KafkaException as exc:
        code = exc.args[0].code()
        if code in ok_codes:
            return ALLOWED
        if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            return DENIED
        raise


async def _group_commit(access: KafkaAccess, settings: Settings, group: str) -> str:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                                enable_auto_commit=False, request_timeout_ms=10_000,
                                **access.aiokafka_options())
    await consumer.start()
    tp = TopicPartition(settings.logins_topic, 0)
    try:
        consumer.assign([tp])
        await consumer.commit({tp: 0})
        return ALLOWED
    except (GroupAuthorizationFailedError, TopicAuthorizationFailedError):
        return DENIED
    finally:
        await consumer.stop()


async def _group_offsets(access: KafkaAccess, settings: Settings, group: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                **access.aiokafka_options())
    await admin.start()
    try:
        await admin.list_consumer_group_offsets(group)
        return ALLOWED
    except GroupAuthorizationFailedError:
        return DENIED
    finally:
        await admin.close()


async def test_every_principal_can_do_exactly_what_its_role_may(kafka_bootstrap: str,
                                                                tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    await ensure_topics(settings)
    accesses = {role: kafka_access(settings, role) for role in Role}
    # Delete last, the admin last of all: the other checks need the topics.
    order = sorted(Role, key=lambda r: r is Role.ADMIN)
    got: dict[tuple[str, str, str, str], str] = {}
    want: dict[tuple[str, str, str, str], str] = {}
    for op in OPERATIONS:
        for role in order:
            for key, topic in _topics(settings).items():
                if op == "produce":
                    result = await _produce(accesses[role], settings, topic)
                elif op == "consume":
                    result = await asyncio.to_thread(_consume, accesses[role], settings, topic)
                else:
                    result = await asyncio.to_thread(_admin_call, accesses[role], settings, op,
                                                     topic)
                got[(role.value, "topic", key, op)] = result
                want[(role.value, "topic", key, op)] = (
                    ALLOWED if LETTER[op] in TOPIC_MATRIX[role][key] else DENIED)
            if op == "consume":
                for key, group in _groups(settings).items():
                    for what, call in (("c", _group_commit), ("s", _group_offsets)):
                        got[(role.value, "group", key, what)] = await call(
                            accesses[role], settings, group)
                        want[(role.value, "group", key, what)] = (
                            ALLOWED if what in GROUP_MATRIX[role][key] else DENIED)
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not wrong, f"(principal, resource, name, operation): (got, wanted): {wrong}"
    assert sum(v == ALLOWED for v in want.values()) > 0
    assert sum(v == DENIED for v in want.values()) > 0


async def test_the_door_refuses_plaintext_no_credentials_a_wrong_password_and_another_ca(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    edge = kafka_access(settings, Role.EDGE)
    assert await check_connection(settings.bootstrap_servers, edge)

    plaintext = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                    request_timeout_ms=3000)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(plaintext.start(), 20)
    await plaintext.close()

    tls_only = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                   security_protocol="SSL", ssl_context=edge.ssl_context(),
                                   request_timeout_ms=3000)
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(tls_only.start(), 20)
    await tls_only.close()

    wrong = KafkaAccess(Role.EDGE, True, edge.username, SecretStr("not-the-password"),
                        edge.mechanism, edge.ca_file)
    with pytest.raises(KafkaRefused, match=r"refused User:edge .*Authentication failed"):
        await check_connection(settings.bootstrap_servers, wrong)

    _, other_ca = new_ca(tmp_path / "other-ca")
    stranger = KafkaAccess(Role.EDGE, True, edge.username, edge.password, edge.mechanism,
                           other_ca)
    with pytest.raises(KafkaRefused, match="does not verify against the CA in"):
        await check_connection(settings.bootstrap_servers, stranger)


def _cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSITIONING_")}
    return {**env, **settings.to_env(), **extra}


def test_an_edge_with_a_wrong_password_stops_at_once_and_says_why(kafka_bootstrap: str,
                                                                  tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    env = _cli_env(settings, POSITIONING_KAFKA_PASSWORD="wrong-password-0000")
    result = subprocess.run([sys.executable, "-m", "cli.main", "edge", "--region", "eu",
                             "--port", "0", "--data-dir", str(tmp_path / "edge")],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert "refused User:edge" in result.stderr + result.stdout


def test_a_worker_with_an_unknown_ca_stops_at_once_and_says_why(kafka_bootstrap: str,
                                                                tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    _, other_ca = new_ca(tmp_path / "other-ca")
    env = _cli_env(settings, POSITIONING_KAFKA_CA_FILE=str(other_ca))
    result = subprocess.run([sys.executable, "-m", "cli.main", "worker"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "does not verify against the CA in" in result.stderr


def test_a_missing_ca_file_is_named(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path).replace(
        kafka_ca_file=tmp_path / "nowhere" / "ca.pem")
    with pytest.raises(Exception, match=r"CA file .*nowhere/ca.pem does not exist"):
        kafka_access(settings, Role.ORIGIN)


def _extra_write_on_offers(settings: Settings, user: str, add: bool) -> None:
    admin = admin_client(kafka_access(settings, Role.ADMIN), settings.bootstrap_servers, 15)
    binding = AclBinding(ResourceType.TOPIC, settings.offers_topic, ResourcePatternType.LITERAL,
                         user if user.startswith("User:") else f"User:{user}", "*",
                         AclOperation.WRITE, AclPermissionType.ALLOW)
    if add:
        futures: Any = admin.create_acls([binding], request_timeout=15)
        for future in futures.values():
            future.result(timeout=20)
    else:
        matching = AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                                    binding.principal, binding.host, binding.operation,
                                    binding.permission_type)
        (future,) = admin.delete_acls([matching], request_timeout=15).values()
        future.result(timeout=20)


def test_a_principal_with_more_than_its_role_is_refused(kafka_bootstrap: str,
                                                        tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(settings))
    edge = kafka_access(settings, Role.EDGE)
    check_own_access(settings, edge)  # exactly its role: passes
    _extra_write_on_offers(settings, str(edge.username), add=True)
    try:
        with pytest.raises(AclMismatch, match=r"User:edge runs as the edge role but may also "
                                              r"WRITE on topic"):
            check_own_access(settings, edge)
        with pytest.raises(AclMismatch, match=r"User:edge \(role edge\) may WRITE on topic"):
            ensure_principals(settings)
    finally:
        _extra_write_on_offers(settings, str(edge.username), add=False)
    ensure_principals(settings)


def test_an_acl_for_every_principal_is_refused(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(settings))
    _extra_write_on_offers(settings, "User:*", add=True)
    try:
        with pytest.raises(AclMismatch, match=r"User:\* \(every principal\) may WRITE on topic"):
            ensure_principals(settings)
        with pytest.raises(AclMismatch, match=r"User:edge runs as the edge role but may also "
                                              r"WRITE on topic"):
            check_own_access(settings, kafka_access(settings, Role.EDGE))
    finally:
        _extra_write_on_offers(settings, "User:*", add=False)
    ensure_principals(settings)


def test_a_principal_with_less_than_its_role_is_refused(kafka_bootstrap: str,
                                                        tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    asyncio.run(ensure_topics(settings))
    # The origin's user, configured as this process's edge: it may write logins, not read
    # offers.
    origin = kafka_access(settings, Role.ORIGIN)
    as_edge = KafkaAccess(Role.EDGE, True, origin.username, origin.password, origin.mechanism,
                          origin.ca_file)
    with pytest.raises(AclMismatch, match=r"runs as the edge role but .*lacks DESCRIBE, READ on topic"):
        check_own_access(settings, as_edge, propagation_s=1.0)


async def test_a_user_added_to_a_role_later_can_log_in_with_exactly_that_role(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path)
    await ensure_topics(settings)
    user = f"edge-late-{settings.worker_id[-8:]}"
    late = settings.replace(kafka_principals=(*settings.kafka_principals, f"edge={user}"))
    assert settings.kafka_credentials_file is not None
    add_users(_cluster_home(settings.kafka_credentials_file), [user])
    access = kafka_access(late.replace(kafka_username=user), Role.EDGE)
    with pytest.raises(KafkaRefused):  # not on the cluster yet
        await check_connection(late.bootstrap_servers, access)
    created = await asyncio.to_thread(ensure_principals, late)
    assert created[user] == 2  # READ and DESCRIBE on offers
    assert await check_connection(late.bootstrap_servers, access)
    await asyncio.to_thread(check_own_access, late, access)


def _cluster_home(credentials: Path) -> Settings:
    """The settings of the local cluster whose credentials file is ``credentials``
    (``<home>/kafka/security/credentials.json``)."""
    return Settings(home=credentials.parent.parent.parent)
