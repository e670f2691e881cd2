"""Opening one authenticated Kafka connection, and telling a refusal from a broker not up yet.

aiokafka logs a refused certificate or password and then reports only that
it could not bootstrap. ``check_connection`` makes the connection itself and
raises ``KafkaRefused`` with what was refused and the fix; a broker that does
not answer is not a refusal.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from runtime.kafka_security import KafkaAccess, KafkaAccessError
from runtime.settings import env_var

log = logging.getLogger(__name__)


class KafkaRefused(KafkaAccessError):
    """Kafka refused this process's TLS or credentials; retrying cannot help."""


async def check_connection(bootstrap_servers: str, access: KafkaAccess,
                           timeout_s: float = 10.0) -> bool:
    """Connect to the first bootstrap server that answers, as ``access``.

    Returns True once one connection is made and authenticated, False if no
    server answered (down, or not yet up).

    Raises:
        KafkaRefused: a server answered and refused the certificate, the TLS
            handshake or the credentials.
    """
    options = access.aiokafka_options()
    for address in (a.strip() for a in bootstrap_servers.split(",") if a.strip()):
        host, _, port = address.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000),
                            **options), timeout_s)
        except ssl.SSLCertVerificationError as exc:
            raise KafkaRefused(
                f"the Kafka broker at {address} presented a certificate that does not verify "
                f"against the CA in {access.ca_file} ({exc.verify_message}): set "
                f"{env_var('kafka_ca_file')} to the CA that signed the brokers' "
                "certificates") from None
        except ssl.SSLError as exc:
            # Not fatal: a broker killed or stopping mid-handshake ends it the same way a
            # plaintext listener does (EOF). Say what it may mean, and let retries decide.
            log.warning("the TLS handshake with Kafka at %s failed (%s): if that listener is "
                        "plaintext, set %s=plaintext", address, exc.reason,
                        env_var("kafka_security"))
            continue
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            raise KafkaRefused(
                f"the Kafka broker at {address} refused {access.principal} "
                f"({access.mechanism}): {exc}. Check {env_var('kafka_password')} or the "
                f"credentials file, and that the user exists on the cluster") from None
        except (OSError, TimeoutError, KafkaError) as exc:
            if not access.secured and isinstance(exc, KafkaError):
                # A plaintext client at a TLS listener: the broker drops the connection.
                log.warning("Kafka at %s dropped a plaintext connection (%r): if the cluster "
                            "is secured, unset %s=plaintext", address, exc,
                            env_var("kafka_security"))
            log.debug("Kafka at %s did not answer: %r", address, exc)
            continue
        conn.close()
        return True
    return False


async def cluster_id(bootstrap_servers: str, access: KafkaAccess,
                     timeout_s: float = 10.0) -> str | None:
    """The cluster's id (``cluster.id``, KIP-78), asked as ``access``; None if the cluster
    did not answer within ``timeout_s`` seconds (a Metadata request needs no ACL)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                request_timeout_ms=int(timeout_s * 1000),
                                **access.aiokafka_options())
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            found = (await admin.describe_cluster()).get("cluster_id")
    except (OSError, TimeoutError, KafkaError) as exc:
        log.warning("Kafka at %s did not say its cluster id (%r)", bootstrap_servers, exc)
        return None
    finally:
        await admin.close()
    return str(found) if found else None
