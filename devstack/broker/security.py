"""The local cluster's own CA, broker certificate and SCRAM passwords, made once per home.

Under ``<home>/kafka/security/`` (mode 0700, every file 0600):

- ``ca.pem`` / ``ca-key.pem``: a CA made for this home alone (EC P-256, ten
  years); clients trust ``ca.pem`` (``kafka_ca_file`` points elsewhere for a
  real cluster);
- ``broker.pem``: the nodes' key (PKCS#8, which Kafka's PEM loader needs; it
  refuses SEC1 and PKCS#1) and certificate chain, a PEM keystore (KIP-651),
  for the name ``broker`` with the listen host as an IP or DNS SAN; it serves
  TLS on the client listener and authenticates the nodes to each other on
  the controller listener (mTLS);
- ``credentials.json``: ``{user: password}``, 256 random bits each, for the
  broker's inter-broker user and every user of ``kafka_principals``.

Made with the ``cryptography`` library; nothing here is ever logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from runtime.acls import grant_admin
from runtime.kafka_security import CA_FILE, CREDENTIALS_FILE, KafkaAccess, Role, read_credentials
from runtime.private_files import write_private
from runtime.settings import Settings

BROKER_USER = "broker"   # the nodes' own principal, on both listeners: the only super user
CA_KEY_FILE = "ca-key.pem"
KEYSTORE_FILE = "broker.pem"
_VALID = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class BrokerSecurity:
    """What a secured local node's configuration names: its keystore, the CA, its password."""

    dir: Path
    broker_password: str

    @property
    def ca_file(self) -> Path:
        return self.dir / CA_FILE

    @property
    def keystore_file(self) -> Path:
        return self.dir / KEYSTORE_FILE

    def __repr__(self) -> str:
        return f"BrokerSecurity(dir={self.dir!s})"


def ensure_local_security(settings: Settings) -> BrokerSecurity:
    """The home's CA, broker keystore and passwords, made if missing (idempotent).

    Users of ``kafka_principals`` without a password get one; nothing existing
    is replaced, so certificates and passwords outlive restarts.
    """
    root = settings.kafka_security_dir
    host, _ = settings.kafka_host_port
    ca_path = ensure_local_ca(settings)
    ca_key_path = root / CA_KEY_FILE
    keystore = root / KEYSTORE_FILE
    if not keystore.exists():
        ca_key_loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
        assert isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _leaf_certificate(key, ca_key_loaded, ca_cert, BROKER_USER,
                                 hosts=[host, "127.0.0.1", "localhost"])
        write_private(keystore, _pkcs8(key) + cert.public_bytes(serialization.Encoding.PEM)
                       + ca_cert.public_bytes(serialization.Encoding.PEM))
    passwords = add_users(settings, [BROKER_USER, *principal_users(settings)])
    return BrokerSecurity(root, passwords[BROKER_USER])


def ensure_local_ca(settings: Settings) -> Path:
    """The home's own CA (EC P-256), made if missing; returns its certificate's path. It
    signs the local brokers' and the front door's certificates."""
    root = settings.kafka_security_dir
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    ca_key_path, ca_path = root / CA_KEY_FILE, root / CA_FILE
    if not ca_path.exists() or not ca_key_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        write_private(ca_key_path, _pkcs8(ca_key))
        write_private(ca_path, _ca_certificate(ca_key).public_bytes(serialization.Encoding.PEM))
    return ca_path


def superuser_access(settings: Settings) -> KafkaAccess:
    """The local nodes' own principal (``broker``, the one super user), for the grants no
    admin can make for itself."""
    password = read_credentials(settings.kafka_security_dir / CREDENTIALS_FILE)[BROKER_USER]
    return KafkaAccess(Role.ADMIN, True, BROKER_USER, SecretStr(password),
                       "SCRAM-SHA-512", settings.kafka_security_dir / CA_FILE)


def grant_local_admin(settings: Settings) -> None:
    """Give the admin users their ACLs as the super user; a no-op when plaintext."""
    if settings.secured:
        grant_admin(settings, superuser_access(settings))


def principal_users(settings: Settings) -> list[str]:
    """Every user named in ``kafka_principals``, once each, in order."""
    users: list[str] = []
    for pair in settings.kafka_principals:
        user = pair.partition("=")[2].strip()
        if user not in users:
            users.append(user)
    return users


def add_users(settings: Settings, users: list[str]) -> dict[str, str]:
    """The home's passwords, with a new random one for each of ``users`` that had none."""
    path = settings.kafka_security_dir / CREDENTIALS_FILE
    passwords = read_credentials(path) if path.exists() else {}
    missing = [u for u in users if u not in passwords]
    if missing:
        passwords.update({u: secrets.token_urlsafe(32) for u in missing})
        write_private(path, json.dumps(passwords, indent=1).encode())
    return passwords


def issue_certificate(settings: Settings, name: str, directory: Path,
                      hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> tuple[Path, Path]:
    """A key and certificate for ``name`` and ``hosts`` (its SANs) signed by the home's CA
    (the front door's, tests' and extra listeners'): ``(<dir>/<name>-key.pem,
    <dir>/<name>.pem)``, both mode 0600."""
    root = settings.kafka_security_dir
    ca_key = serialization.load_pem_private_key((root / CA_KEY_FILE).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = x509.load_pem_x509_certificate((root / CA_FILE).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf_certificate(key, ca_key, ca_cert, name, hosts=list(dict.fromkeys(hosts)))
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / f"{name}-key.pem", directory / f"{name}.pem"
    write_private(key_path, _pkcs8(key))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def new_ca(directory: Path, name: str = "another CA") -> tuple[Path, Path]:
    """A CA of its own, unrelated to any home's: ``(key, certificate)`` files (for tests of
    a client or broker that must be refused)."""
    key = ec.generate_private_key(ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "ca-key.pem", directory / "ca.pem"
    write_private(key_path, _pkcs8(key))
    write_private(cert_path, _ca_certificate(key, name).public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ca_certificate(key: ec.EllipticCurvePrivateKey,
                    name: str = "content-positioning local CA") -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))


def _leaf_certificate(key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey,
                      ca_cert: x509.Certificate, name: str, hosts: list[str]) -> x509.Certificate:
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + _VALID)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
