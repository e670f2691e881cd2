"""Least privilege on the Kafka plane: what each role may do, granted and checked.

``role_grants(settings, role)`` is the whole of a role's rights, as ACL
grants (resource, pattern, operations); ``positioning topics`` creates them
for every user of ``kafka_principals`` (``ensure_acls``), adds the users'
SCRAM credentials a local home knows, and refuses a principal that holds
more than its role on this deployment's topics, groups or the cluster.

- admin: everything on topics, groups and the cluster (creates topics, ACLs
  and users): `positioning topics`, `migrate-state`, the bench and chaos;
- ops: describe the topics and the worker's group, read the dead letters,
  write `logins` and use its replay group (`status`, `dlq list`/`replay`);
- origin: write `logins` (the origin, `positioning produce`);
- worker: read `logins` in its group; write `offers` (and read it back for
  expiry) and `logins.dlq`; what Faust needs on `<worker_id>-` topics and
  groups;
- edge: read `offers`.

aiokafka's admin client has no ACL or SCRAM calls (aiokafka #955), so this
module uses confluent-kafka's ``AdminClient`` (librdkafka), which has both
and also reports a principal's own authorized operations. It is synchronous:
callers in an event loop run it in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from runtime.acl_propagation import ACL_PROPAGATION_S, retrying
from runtime.kafka_connection import KafkaRefused, check_connection
from runtime.kafka_security import (
    KafkaAccess,
    KafkaAccessError,
    Role,
    ca_file,
    credentials_file,
    kafka_access,
    read_credentials,
    role_users,
)
from runtime.settings import Settings
from runtime.topics import changelog_topic

OPERATIONS_FIX = "docs/operations.md, 'Principals and ACLs'"

Op = AclOperation
TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
TRANSACTIONAL_ID = ResourceType.TRANSACTIONAL_ID
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
CLUSTER_NAME = "kafka-cluster"

# Operations Kafka grants implicitly with another (AclOperation docs, KIP-430).
_IMPLIED = {
    Op.READ: {Op.DESCRIBE}, Op.WRITE: {Op.DESCRIBE}, Op.DELETE: {Op.DESCRIBE},
    Op.ALTER: {Op.DESCRIBE}, Op.ALTER_CONFIGS: {Op.DESCRIBE_CONFIGS},
}
_ALL_TOPIC_OPS = {Op.READ, Op.WRITE, Op.CREATE, Op.DELETE, Op.ALTER, Op.DESCRIBE,
                  Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS}
# What ALL stands for on each kind of resource (Kafka's AclEntry.supportedOperations).
_ALL_OPS = {
    ResourceType.TOPIC: _ALL_TOPIC_OPS,
    ResourceType.GROUP: {Op.READ, Op.DESCRIBE, Op.DELETE},
    ResourceType.TRANSACTIONAL_ID: {Op.WRITE, Op.DESCRIBE},
    ResourceType.BROKER: {Op.CREATE, Op.CLUSTER_ACTION, Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS,
                          Op.IDEMPOTENT_WRITE, Op.ALTER, Op.DESCRIBE},
}
WILDCARD_PRINCIPAL = "User:*"  # an ACL for everyone: counted as every principal's own


class AclMismatch(KafkaAccessError):
    """A principal holds more or less than its role; the message says what and the fix.
    ``lacking_only``: it holds no more than its role, only less (so far)."""

    def __init__(self, message: str, lacking_only: bool = False) -> None:
        super().__init__(message)
        self.lacking_only = lacking_only


@dataclass(frozen=True)
class Grant:
    """Operations allowed on one resource pattern (a topic, a group or the cluster)."""

    resource: ResourceType
    name: str
    pattern: ResourcePatternType
    operations: frozenset[AclOperation]

    def describe(self) -> str:
        kind = {TOPIC: "topic", GROUP: "group", CLUSTER: "cluster",
                TRANSACTIONAL_ID: "transactional id"}[self.resource]
        where = f"{kind} {self.name!r}" + (" (prefix)" if self.pattern == PREFIXED else "")
        return f"{', '.join(sorted(o.name for o in self.operations))} on {where}"


def _grant(resource: ResourceType, name: str, *ops: AclOperation,
           pattern: ResourcePatternType = LITERAL) -> Grant:
    return Grant(resource, name, pattern, frozenset(ops))


def role_grants(settings: Settings, role: Role) -> list[Grant]:
    """Everything ``role`` may do on this deployment, and nothing more."""
    logins, offers, dlq, app = (settings.logins_topic, settings.offers_topic,
                                settings.dlq_topic, settings.worker_id)
    describe = (Op.DESCRIBE, Op.DESCRIBE_CONFIGS)
    if role is Role.ADMIN:
        return [_grant(CLUSTER, CLUSTER_NAME, Op.ALL), _grant(TOPIC, "*", Op.ALL),
                _grant(GROUP, "*", Op.ALL)]
    if role is Role.OPS:
        return [_grant(TOPIC, logins, *describe, Op.WRITE), _grant(TOPIC, offers, *describe),
                _grant(TOPIC, dlq, *describe, Op.READ), _grant(GROUP, app, Op.DESCRIBE),
                # `dlq replay`'s progress group, and any other replay group an operator
                # names under it.
                _grant(GROUP, f"{app}.dlq-replay", Op.READ, pattern=PREFIXED),
                # A replay is one transaction, its id the replay group's name (it fences
                # a replay of the same group running at the same time).
                _grant(TRANSACTIONAL_ID, f"{app}.dlq-replay", Op.WRITE, pattern=PREFIXED)]
    if role is Role.ORIGIN:
        return [_grant(TOPIC, logins, Op.WRITE, Op.DESCRIBE)]
    if role is Role.WORKER:
        return [_grant(TOPIC, logins, *describe, Op.READ),
                _grant(TOPIC, offers, *describe, Op.WRITE, Op.READ),
                _grant(TOPIC, dlq, *describe, Op.WRITE),
                _grant(GROUP, app, Op.READ),
                # Faust's own topics (the state changelog, the assignor's leader topic)
                # and the expiry consumer's group all start with the app id.
                _grant(TOPIC, f"{app}-", Op.CREATE, Op.READ, Op.WRITE, *describe,
                       pattern=PREFIXED),
                _grant(GROUP, f"{app}-", Op.READ, pattern=PREFIXED)]
    if role is Role.EDGE:
        return [_grant(TOPIC, offers, Op.READ, Op.DESCRIBE)]
    raise ValueError(f"unknown role {role!r}")


def effective(operations: Iterable[AclOperation],
              resource: ResourceType = ResourceType.TOPIC) -> set[AclOperation]:
    """``operations`` on a ``resource`` with those Kafka implies (READ implies DESCRIBE,
    ALL implies every operation that kind of resource has)."""
    out = set(operations)
    if Op.ALL in out:
        out |= _ALL_OPS.get(resource, _ALL_TOPIC_OPS)
    for op in list(out):
        out |= _IMPLIED.get(op, set())
    return out


def expected_topic_operations(settings: Settings, role: Role) -> dict[str, set[AclOperation]]:
    """What ``role`` may do on each of the three topics, implied operations included."""
    out: dict[str, set[AclOperation]] = {}
    for topic in (settings.logins_topic, settings.offers_topic, settings.dlq_topic):
        ops: set[AclOperation] = set()
        for g in role_grants(settings, role):
            if g.resource == TOPIC and _matches(g, topic):
                ops |= g.operations
        out[topic] = effective(ops)
    return out


def _matches(grant: Grant, name: str) -> bool:
    if grant.pattern == PREFIXED:
        return name.startswith(grant.name)
    return grant.name in ("*", name)


def _bindings(principal: str, grants: Iterable[Grant]) -> list[AclBinding]:
    return [AclBinding(g.resource, g.name, g.pattern, principal, "*", op, AclPermissionType.ALLOW)
            for g in grants for op in sorted(g.operations, key=lambda o: o.value)]


def admin_client(access: KafkaAccess, bootstrap_servers: str, timeout_s: float) -> AdminClient:
    """A confluent-kafka admin client connecting as ``access``'s principal."""
    # librdkafka's own log lines (errors only) go to stderr: a Python logger on an
    # AdminClient is served only by polling it (confluent-kafka-python #1734). Every
    # failure also comes back through the call's future.
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers,
                              "socket.timeout.ms": int(timeout_s * 1000),
                              "log_level": 3, **access.librdkafka_config()}
    return AdminClient(config)


def _result(future: Future[Any], timeout_s: float) -> Any:
    return future.result(timeout=timeout_s)


def principal_acls(admin: AdminClient, principal: str, timeout_s: float) -> list[AclBinding]:
    """Every ALLOW and DENY ACL of ``principal``."""
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
                           AclOperation.ANY, AclPermissionType.ANY)
    return list(_result(admin.describe_acls(flt, request_timeout=timeout_s), timeout_s))


def everyones_acls(admin: AdminClient, timeout_s: float) -> list[AclBinding]:
    """The ACLs granted to ``User:*``, which every principal holds as well as its own."""
    return principal_acls(admin, WILDCARD_PRINCIPAL, timeout_s)


def _allowed(grants: list[Grant], resource: ResourceType, name: str) -> set[AclOperation]:
    """What ``grants`` allow on the resource called ``name``, implied operations included."""
    return effective((op for g in grants if g.resource == resource and _matches(g, name)
                      for op in g.operations), resource)


def extras(settings: Settings, role: Role, acls: Iterable[AclBinding]) -> list[str]:
    """ACLs in ``acls`` that let ``role`` do more than its grants on one of this deployment's
    topics or groups, or anything on the cluster that its grants do not, as sentences.

    An ACL made for another deployment (another topic generation, say) is judged only
    by what it allows on this one's resources.
    """
    return _beyond(settings, role_grants(settings, role), acls)


def _beyond(settings: Settings, grants: list[Grant], acls: Iterable[AclBinding]) -> list[str]:
    """``extras`` against any list of grants (none, for ACLs everyone holds)."""
    app = settings.worker_id
    names = {TOPIC: [settings.logins_topic, settings.offers_topic, settings.dlq_topic,
                     changelog_topic(app)],
             GROUP: [app, f"{app}-expiry", f"{app}.dlq-replay"],
             TRANSACTIONAL_ID: [f"{app}.dlq-replay"],
             CLUSTER: [CLUSTER_NAME]}
    out = []
    for acl in acls:
        if acl.permission_type != AclPermissionType.ALLOW or acl.restype not in names:
            continue
        pattern = Grant(acl.restype, acl.name, acl.resource_pattern_type, frozenset())
        for name in names[acl.restype]:
            if _matches(pattern, name) and not effective([acl.operation], acl.restype) <= _allowed(
                    grants, acl.restype, name):
                kind = str(acl.resource_pattern_type.name).lower()
                out.append(f"{acl.operation.name} on {acl.restype.name.lower()} {acl.name!r} "
                           f"({kind}), which reaches {name!r}")
                break
    return out


def ensure_acls(settings: Settings, access: KafkaAccess, timeout_s: float = 30.0,
                passwords: dict[str, str] | None = None) -> dict[str, int]:
    """Grant every user of ``kafka_principals`` its role's ACLs, and check it holds no more.

    ``passwords`` (a local home's) are upserted as SCRAM-SHA-512 and -256
    credentials first, so users added to ``kafka_principals`` after the
    storage was formatted can log in. Returns ACLs created per user.
    Connects as ``access`` (the admin role). Idempotent.

    Raises:
        AclMismatch: a principal holds more than its role (the message lists
            every extra ACL and the command that removes it).
        KafkaException: the cluster refused or did not answer.
    """
    admin = admin_client(access, settings.bootstrap_servers, timeout_s)
    if passwords:
        _upsert_users(admin, settings, passwords, timeout_s)
    created: dict[str, int] = {}
    problems: list[str] = []
    everyone = everyones_acls(admin, timeout_s)
    # An ACL for everyone is every role's too: no role needs one, so any is refused.
    problems += [f"{WILDCARD_PRINCIPAL} (every principal) may {extra}"
                 for extra in _beyond(settings, [], everyone)]
    for role in Role:
        for user in role_users(settings, role):
            principal = f"User:{user}"
            have = principal_acls(admin, principal, timeout_s)
            held = {(a.restype, a.name, a.resource_pattern_type, a.operation)
                    for a in have if a.permission_type == AclPermissionType.ALLOW}
            wanted = [b for b in _bindings(principal, role_grants(settings, role))
                      if (b.restype, b.name, b.resource_pattern_type, b.operation) not in held]
            if wanted:
                for future in admin.create_acls(wanted, request_timeout=timeout_s).values():
                    _result(future, timeout_s)
            created[user] = len(wanted)
            problems += [f"{principal} (role {role.value}) may {extra}"
                         for extra in extras(settings, role, have)]
    if problems:
        raise AclMismatch(
            "principals with more than their role: " + "; ".join(problems) + ". Remove each "
            "extra ACL (kafka-acls.sh --remove --allow-principal <principal> ...), or give the "
            f"user to the role that needs it ({OPERATIONS_FIX})")
    return created


def ensure_principals(settings: Settings, timeout_s: float = 30.0) -> dict[str, int]:
    """``ensure_acls`` as the admin role, upserting the passwords the credentials file has for
    the users of ``kafka_principals`` (a local home's file has them all). A no-op when
    plaintext. Raises as ``ensure_acls``, and KafkaAccessError."""
    if not settings.secured:
        return {}
    path = credentials_file(settings)
    known = read_credentials(path) if path.exists() else {}
    users = {u for role in Role for u in role_users(settings, role)}
    passwords = {u: p for u, p in known.items() if u in users}
    return ensure_acls(settings, kafka_access(settings, Role.ADMIN), timeout_s, passwords)


def _upsert_users(admin: AdminClient, settings: Settings, passwords: dict[str, str],
                  timeout_s: float) -> None:
    """Give SCRAM-SHA-512 and -256 credentials to each user that cannot log in with its
    password. Whether a user can is tried with a login of its own: librdkafka's
    DescribeUserScramCredentials aborted the process on a three-node cluster here."""
    missing = _cannot_log_in(settings, passwords, timeout_s)
    for mechanism in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256):
        # One alteration per user per request (the broker refuses two).
        upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, 4096),
                                                password.encode())
                   for user, password in missing.items()]
        if upserts:
            for future in admin.alter_user_scram_credentials(
                    upserts, request_timeout=timeout_s).values():
                _result(future, timeout_s)


def _cannot_log_in(settings: Settings, passwords: dict[str, str],
                   timeout_s: float) -> dict[str, str]:
    """The users of ``passwords`` whose login the cluster refuses."""
    async def probe() -> dict[str, str]:
        refused = {}
        for user, password in passwords.items():
            access = KafkaAccess(Role.ADMIN, True, user, SecretStr(password),
                                 settings.kafka_sasl_mechanism, ca_file(settings))
            try:
                await check_connection(settings.bootstrap_servers, access, timeout_s)
            except KafkaRefused:
                refused[user] = password
        return refused

    # Callers may be inside an event loop (the tests): the probe runs in a loop of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, probe()).result()


def grant_admin(settings: Settings, superuser: KafkaAccess, timeout_s: float = 30.0) -> None:
    """Give every admin user the admin role's ACLs, connecting as a super user (the local
    cluster's own ``broker``): the one grant no admin can make for itself."""
    admin = admin_client(superuser, settings.bootstrap_servers, timeout_s)
    bindings = [b for user in role_users(settings, Role.ADMIN)
                for b in _bindings(f"User:{user}", role_grants(settings, Role.ADMIN))]
    for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
        _result(future, timeout_s)


def check_own_access(settings: Settings, access: KafkaAccess, timeout_s: float = 15.0,
                     propagation_s: float = ACL_PROPAGATION_S) -> None:
    """Refuse to run with more or less than ``access.role`` may do on the three topics.

    Asks the cluster for this principal's own authorized operations on each
    topic (KIP-430; needs no right beyond the role's own). A topic that does
    not exist yet is skipped: ``positioning topics`` reports it. Rights that
    are only lacking are asked again for ``propagation_s`` (s), while a fresh
    grant reaches every broker (runtime/acl_propagation.py); rights beyond the
    role are refused at once.

    Raises:
        AclMismatch: the principal's rights differ from its role's, with the fix.
        KafkaException: the cluster did not answer.
    """
    if not access.secured:
        return
    admin = admin_client(access, settings.bootstrap_servers, timeout_s)
    for attempt in retrying(f"{access.principal}'s own rights",
                            lambda e: isinstance(e, AclMismatch) and e.lacking_only,
                            propagation_s):
        with attempt:
            _check_own_access_once(settings, access, admin, timeout_s)


def _check_own_access_once(settings: Settings, access: KafkaAccess, admin: AdminClient,
                           timeout_s: float) -> None:
    expected = expected_topic_operations(settings, access.role)
    futures = admin.describe_topics(TopicCollection(list(expected)),
                                    include_authorized_operations=True,
                                    request_timeout=timeout_s)
    problems = []
    lacking_only = True
    for topic, future in futures.items():
        try:
            actual = set(_result(future, timeout_s).authorized_operations or [])
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                actual = set()
            elif code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            else:
                raise
        actual = effective(actual)
        missing = expected[topic] - actual
        extra = actual - expected[topic]
        if missing:
            problems.append(f"lacks {', '.join(sorted(o.name for o in missing))} on topic "
                            f"{topic!r}")
        if extra:
            lacking_only = False
            problems.append(f"may also {', '.join(sorted(o.name for o in extra))} on topic "
                            f"{topic!r}")
    if problems:
        raise AclMismatch(
            f"{access.principal} runs as the {access.role.value} role but "
            + "; ".join(problems) + ". Run `positioning topics` as the admin role to grant "
            "exactly each role's ACLs, and remove extra ones (kafka-acls.sh --remove); "
            f"{OPERATIONS_FIX}", lacking_only=lacking_only)
