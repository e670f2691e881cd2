"""The Kafka plane's pure parts: who connects as whom, what each role may, the local CA."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from devstack.broker.config import server_properties
from devstack.broker.layout import cluster_layout
from devstack.broker.security import ensure_local_security, principal_users
from runtime.acls import expected_topic_operations, extras, role_grants
from runtime.kafka_security import KafkaAccess, KafkaAccessError, Role, kafka_access
from runtime.settings import Settings


def _home(tmp_path: Path, **changes: object) -> Settings:
    settings = Settings(home=tmp_path, **changes)  # type: ignore[arg-type]
    ensure_local_security(settings)
    return settings


def test_each_role_connects_as_its_own_user_with_the_homes_password(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    passwords = json.loads((settings.kafka_security_dir / "credentials.json").read_text())
    users = set()
    for role in Role:
        access = kafka_access(settings, role)
        assert access.principal == f"User:{role.value}"
        assert access.password is not None
        assert access.password.get_secret_value() == passwords[role.value]
        options = access.aiokafka_options()
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        users.add(access.username)
    assert len(users) == len(Role)
    assert len(set(passwords.values())) == len(passwords)  # every user its own password


def test_a_password_never_shows_in_a_repr(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    access = kafka_access(settings, Role.EDGE)
    assert access.password is not None
    secret = access.password.get_secret_value()
    assert secret not in repr(access) and secret not in str(access)
    explicit = settings.replace(kafka_password="p" * 20)
    assert "p" * 20 not in repr(explicit)


def test_explicit_user_and_password_win_over_the_file(tmp_path: Path) -> None:
    settings = _home(tmp_path).replace(kafka_username="edge-eu",
                                       kafka_password=SecretStr("s3cret-s3cret"))
    access = kafka_access(settings, Role.EDGE)
    assert access.username == "edge-eu"
    assert access.password is not None and access.password.get_secret_value() == "s3cret-s3cret"


def test_plaintext_is_an_explicit_opt_out(tmp_path: Path) -> None:
    access = kafka_access(Settings(home=tmp_path, kafka_security="plaintext"), Role.WORKER)
    assert not access.secured
    assert access.aiokafka_options() == {"security_protocol": "PLAINTEXT"}
    assert Settings(home=tmp_path).secured  # the default is secured


def test_missing_and_unsafe_credentials_are_named(tmp_path: Path) -> None:
    with pytest.raises(KafkaAccessError, match="cannot read the Kafka credentials file"):
        kafka_access(Settings(home=tmp_path), Role.ORIGIN)
    settings = _home(tmp_path / "h")
    path = settings.kafka_security_dir / "credentials.json"
    path.chmod(0o644)
    with pytest.raises(KafkaAccessError, match="readable by others"):
        kafka_access(settings, Role.ORIGIN)
    path.chmod(0o600)
    stranger = settings.replace(kafka_principals=("origin=nobody",))
    with pytest.raises(KafkaAccessError, match="no password for Kafka user 'nobody'"):
        kafka_access(stranger, Role.ORIGIN)
    roleless = settings.replace(kafka_principals=("edge=edge",))
    with pytest.raises(KafkaAccessError, match="no Kafka user for the origin role"):
        kafka_access(roleless, Role.ORIGIN)


@pytest.mark.parametrize("pair", ["edge", "boss=admin", "edge=a,b", "edge=", "edge=a b"])
def test_a_principal_pair_must_be_role_equals_user(pair: str) -> None:
    with pytest.raises(ValueError, match="role=user"):
        Settings(kafka_principals=(pair,))


def test_the_local_ca_and_keystore_are_private_pkcs8_and_name_the_host(tmp_path: Path) -> None:
    settings = _home(tmp_path, kafka_listen="127.0.0.7:19092")
    root = settings.kafka_security_dir
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for path in root.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    keystore = (root / "broker.pem").read_bytes()
    assert keystore.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, not SEC1/PKCS#1
    serialization.load_pem_private_key(keystore, None)
    leaf = x509.load_pem_x509_certificates(keystore)[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.7") in sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    ca = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    assert leaf.issuer == ca.subject
    before = (root / "ca.pem").read_bytes(), keystore
    ensure_local_security(settings)  # idempotent: nothing replaced
    assert ((root / "ca.pem").read_bytes(), (root / "broker.pem").read_bytes()) == before


def test_users_added_to_the_principals_get_a_password_and_old_ones_keep_theirs(
        tmp_path: Path) -> None:
    settings = _home(tmp_path)
    path = settings.kafka_security_dir / "credentials.json"
    first = json.loads(path.read_text())
    more = settings.replace(kafka_principals=(*settings.kafka_principals, "edge=edge-ap"))
    ensure_local_security(more)
    second = json.loads(path.read_text())
    assert {k: second[k] for k in first} == first
    assert "edge-ap" in second and "edge-ap" in principal_users(more)


def test_a_secured_node_has_tls_everywhere_mtls_controllers_and_one_super_user(
        tmp_path: Path) -> None:
    settings = _home(tmp_path)
    security = ensure_local_security(settings)
    (node,) = cluster_layout(settings)
    props = server_properties(node, [node], security)
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SECURE:SASL_SSL"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["inter.broker.listener.name"] == "SECURE"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:broker"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert "PLAINTEXT" not in props["listeners"]
    plain = server_properties(node, [node])
    assert plain["listeners"].startswith("PLAINTEXT://") and "super.users" not in plain


def test_the_edge_may_read_offers_and_nothing_else() -> None:
    settings = Settings()
    ops = expected_topic_operations(settings, Role.EDGE)
    assert ops[settings.offers_topic] == {AclOperation.READ, AclOperation.DESCRIBE}
    assert ops[settings.logins_topic] == set() and ops[settings.dlq_topic] == set()
    assert not [g for g in role_grants(settings, Role.EDGE) if g.resource != ResourceType.TOPIC]


def test_the_origin_writes_logins_only_and_no_role_but_admin_touches_the_cluster() -> None:
    settings = Settings()
    ops = expected_topic_operations(settings, Role.ORIGIN)
    assert ops == {settings.logins_topic: {AclOperation.WRITE, AclOperation.DESCRIBE},
                   settings.offers_topic: set(), settings.dlq_topic: set()}
    for role in Role:
        cluster = [g for g in role_grants(settings, role) if g.resource == ResourceType.BROKER]
        assert bool(cluster) == (role is Role.ADMIN)


def _acl(name: str, op: AclOperation, pattern: ResourcePatternType = ResourcePatternType.LITERAL,
         resource: ResourceType = ResourceType.TOPIC) -> AclBinding:
    return AclBinding(resource, name, pattern, "User:edge", "*", op, AclPermissionType.ALLOW)


def test_extras_are_what_reaches_this_deployment_beyond_the_role() -> None:
    settings = Settings()
    offers, logins = settings.offers_topic, settings.logins_topic
    assert extras(settings, Role.EDGE, [_acl(offers, AclOperation.READ)]) == []
    assert extras(settings, Role.EDGE, [_acl("other-deployment", AclOperation.WRITE)]) == []
    found = extras(settings, Role.EDGE, [
        _acl(offers, AclOperation.WRITE), _acl(logins, AclOperation.READ),
        _acl("*", AclOperation.ALL), _acl("off", AclOperation.DELETE, ResourcePatternType.PREFIXED),
        _acl("kafka-cluster", AclOperation.DESCRIBE, resource=ResourceType.BROKER)])
    assert len(found) == 5, found
    deny = AclBinding(ResourceType.TOPIC, logins, ResourcePatternType.LITERAL, "User:edge", "*",
                      AclOperation.ALL, AclPermissionType.DENY)
    assert extras(settings, Role.EDGE, [deny]) == []  # a DENY takes rights away


def test_an_older_generations_prefix_within_the_role_is_no_extra() -> None:
    settings = Settings(worker_id="positioning-worker-v2")
    old_prefix = AclBinding(ResourceType.GROUP, "positioning-worker-",
                            ResourcePatternType.PREFIXED, "User:worker", "*", AclOperation.READ,
                            AclPermissionType.ALLOW)
    # It reaches the new worker's own group, which the worker may read anyway, and the new
    # generation's replay group, which it may not.
    (found,) = extras(settings, Role.WORKER, [old_prefix])
    assert "positioning-worker-v2.dlq-replay" in found


def test_an_access_without_a_ca_file_says_which_setting(tmp_path: Path) -> None:
    access = KafkaAccess(Role.EDGE, True, "edge", SecretStr("x" * 20), "SCRAM-SHA-512", None)
    with pytest.raises(KafkaAccessError, match="POSITIONING_KAFKA_CA_FILE"):
        access.ssl_context()


def test_a_user_given_two_roles_is_refused_at_the_setting() -> None:
    with pytest.raises(ValueError, match="two roles, edge and origin"):
        Settings(kafka_principals=("edge=shared", "origin=shared"))
    Settings(kafka_principals=("edge=edge-eu", "edge=edge-us"))  # several users, one role


def test_all_on_a_group_means_a_groups_operations_only() -> None:
    settings = Settings()
    app = settings.worker_id
    worker = [AclBinding(ResourceType.GROUP, app, ResourcePatternType.LITERAL, "User:worker",
                         "*", AclOperation.ALL, AclPermissionType.ALLOW)]
    # ALL on its own group reaches DELETE, which the worker's READ does not.
    (found,) = extras(settings, Role.WORKER, worker)
    assert "ALL on group" in found
    assert expected_topic_operations(settings, Role.ADMIN)[settings.offers_topic] >= {
        AclOperation.READ, AclOperation.WRITE, AclOperation.ALTER_CONFIGS}
    assert AclOperation.IDEMPOTENT_WRITE not in expected_topic_operations(
        settings, Role.ADMIN)[settings.offers_topic]


def test_a_private_file_never_keeps_a_wider_mode(tmp_path: Path) -> None:
    from runtime.private_files import write_private

    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary file left


def test_format_arguments_survive_the_java_argument_file_quoting() -> None:
    from devstack.broker.local import _argfile_quote

    assert _argfile_quote('a b"c\\d') == '"a b\\"c\\\\d"'
