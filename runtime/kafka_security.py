"""How one process connects to Kafka: TLS, its role's SCRAM principal, and nothing else.

Every Kafka client of the project is made with the options of one
``KafkaAccess``: ``kafka_access(settings, role)`` picks the process's
principal (``kafka_username``, else the role's first user in
``kafka_principals``) and its password (``kafka_password``, else the
credentials file), and the CA the brokers' certificates must chain to. With
``kafka_security=plaintext`` (the explicit opt-out) it is a plaintext link
without a principal.

The roles and what each may do are in runtime/acls.py; a role's principal
has exactly that, so a stolen edge credential reads offers and nothing more.
"""

from __future__ import annotations

import functools
import json
import ssl
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from runtime.settings import Settings, env_var

CA_FILE = "ca.pem"
CREDENTIALS_FILE = "credentials.json"


class Role(StrEnum):
    """What a process does, and so which principal it connects as."""

    ADMIN = "admin"    # topics, ACLs and users: `positioning topics`, migrate-state, bench, chaos
    OPS = "ops"        # reads for status and dead letters; `dlq replay` writes logins
    ORIGIN = "origin"  # writes logins (the origin, `positioning produce`)
    WORKER = "worker"  # the offer worker
    EDGE = "edge"      # reads offers


class KafkaAccessError(RuntimeError):
    """This process cannot connect as configured; the message names what is wrong and the fix."""


@dataclass(frozen=True)
class KafkaAccess:
    """The security of one process's Kafka links: protocol, principal, password, CA.

    ``password`` is a SecretStr: the repr and logs never show it.
    """

    role: Role
    secured: bool
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    mechanism: str = "SCRAM-SHA-512"
    ca_file: Path | None = None

    @property
    def principal(self) -> str:
        """Kafka's name for the principal, ``User:<name>`` (ANONYMOUS when plaintext)."""
        return f"User:{self.username}" if self.secured else "User:ANONYMOUS"

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting only ``ca_file``, host names checked (cached).

        Raises KafkaAccessError: the CA file is missing or not PEM certificates.
        """
        if self.ca_file is None:
            raise KafkaAccessError("no CA file: set " + env_var("kafka_ca_file"))
        return _client_context(self.ca_file)

    def aiokafka_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin, client)."""
        if not self.secured:
            return {"security_protocol": "PLAINTEXT"}
        assert self.password is not None  # kafka_access always sets it when secured
        return {
            "security_protocol": "SASL_SSL",
            "ssl_context": self.ssl_context(),
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value(),
        }

    def librdkafka_config(self) -> dict[str, str]:
        """The security part of a confluent-kafka (librdkafka) client configuration."""
        if not self.secured:
            return {"security.protocol": "PLAINTEXT"}
        assert self.password is not None
        return {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            "sasl.mechanism": self.mechanism,
            "sasl.username": str(self.username),
            "sasl.password": self.password.get_secret_value(),
        }


def role_users(settings: Settings, role: Role) -> list[str]:
    """The SCRAM users of ``role`` in ``kafka_principals``, in order (maybe none)."""
    users = []
    for pair in settings.kafka_principals:
        name, _, user = pair.partition("=")
        if name.strip() == role.value:
            users.append(user.strip())
    return users


def ca_file(settings: Settings) -> Path:
    """The CA the brokers' certificates must chain to: the setting, else the local one."""
    return settings.kafka_ca_file or settings.kafka_security_dir / CA_FILE


def credentials_file(settings: Settings) -> Path:
    """Where passwords are looked up by user: the setting, else the local cluster's file."""
    return settings.kafka_credentials_file or settings.kafka_security_dir / CREDENTIALS_FILE


def kafka_access(settings: Settings, role: Role) -> KafkaAccess:
    """How a process of ``role`` connects, from the settings.

    Raises:
        KafkaAccessError: secured, and the role has no user, the password is
            neither set nor in the credentials file, that file is readable by
            others or not a JSON object, or the CA file is missing.
    """
    if not settings.secured:
        return KafkaAccess(role, secured=False)
    username = settings.kafka_username
    if username is None:
        users = role_users(settings, role)
        if not users:
            raise KafkaAccessError(
                f"no Kafka user for the {role.value} role: add `{role.value}=<user>` to "
                f"{env_var('kafka_principals')} or set {env_var('kafka_username')}")
        username = users[0]
    password = settings.kafka_password
    if password is None:
        password = SecretStr(_password_from_file(credentials_file(settings), username))
    ca = ca_file(settings)
    if not ca.is_file():
        raise KafkaAccessError(
            f"the Kafka CA file {ca} does not exist: set {env_var('kafka_ca_file')} to the PEM "
            f"file of your cluster's CA, or start the local cluster (positioning kafka start) "
            f"in this home")
    return KafkaAccess(role, True, username, password, settings.kafka_sasl_mechanism, ca)


def read_credentials(path: Path) -> dict[str, str]:
    """``{user: password}`` from a mode-0600 JSON file.

    Raises KafkaAccessError: missing, readable by others, or not such an object.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as exc:
        raise KafkaAccessError(
            f"cannot read the Kafka credentials file {path} ({exc.strerror}): set "
            f"{env_var('kafka_password')} or {env_var('kafka_credentials_file')}, or start the "
            "local cluster (positioning kafka start) in this home") from None
    if mode & 0o077:
        raise KafkaAccessError(f"{path} is readable by others (mode {mode:o}); chmod 600 {path}")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise KafkaAccessError(f"{path} is not a JSON object of user to password")
    return data


def _password_from_file(path: Path, username: str) -> str:
    passwords = read_credentials(path)
    if username not in passwords:
        raise KafkaAccessError(
            f"no password for Kafka user {username!r} in {path}: set "
            f"{env_var('kafka_password')}, or run `positioning topics` in the local home, "
            "which adds the users of kafka_principals")
    return passwords[username]


@functools.lru_cache(maxsize=8)
def _client_context(path: Path) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise KafkaAccessError(f"cannot load the Kafka CA file {path}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_options(settings: Settings, role: Role) -> dict[str, Any]:
    """aiokafka keyword arguments for a client of ``role``: ``kafka_access(...)``'s options.

    Raises KafkaAccessError as ``kafka_access`` does.
    """
    return kafka_access(settings, role).aiokafka_options()


def security_files(cluster: Settings) -> dict[str, Any]:
    """The settings with which another home connects to the local cluster of ``cluster``:
    its CA and credentials files; plaintext if that cluster is."""
    if not cluster.secured:
        return {"kafka_security": "plaintext"}
    return {"kafka_ca_file": ca_file(cluster), "kafka_credentials_file": credentials_file(cluster)}
