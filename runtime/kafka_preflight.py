"""At a component's start: can it reach Kafka as configured, and with exactly its role's rights?

aiokafka logs a refused certificate or password and then reports only that
it could not bootstrap, so a component would retry a wrong password forever.
``preflight`` opens one connection itself, tells the faults that no retry
can mend (a certificate that does not chain to the CA, a refused password)
from a broker that is not up yet or went away mid-handshake, and
raises the first kind with what is wrong and the fix. Then it checks the
principal's own rights on the topics (runtime/acls.py ``check_own_access``).
A broker that does not answer is not an error here: the component's own
retries wait for it.
"""

from __future__ import annotations

import asyncio
import logging

from confluent_kafka import KafkaException

from runtime.acls import check_own_access
from runtime.kafka_connection import KafkaRefused, check_connection
from runtime.kafka_security import KafkaAccess
from runtime.settings import Settings

__all__ = ["KafkaRefused", "check_connection", "preflight"]

log = logging.getLogger(__name__)


async def preflight(settings: Settings, access: KafkaAccess, timeout_s: float = 10.0) -> bool:
    """Stop a component at start when no retry could connect it, or its rights are wrong;
    whether Kafka answered (False: not up yet, nothing was checked).

    Raises:
        KafkaRefused: the TLS or the credentials were refused.
        runtime.acls.AclMismatch: the principal has more or less than its role.
    """
    if not await check_connection(settings.bootstrap_servers, access, timeout_s):
        log.warning("Kafka at %s does not answer yet: the principal's rights are not "
                    "checked at this start", settings.bootstrap_servers)
        return False
    try:
        await asyncio.to_thread(check_own_access, settings, access, timeout_s)
    except (KafkaException, TimeoutError) as exc:  # answered, then not this: say so, go on
        log.warning("could not check %s's rights on the topics: %s", access.principal, exc)
    return True
