"""The records on the topics, built in one place: the login event and the headers of
offers, dead letters and replayed logins.

The Avro schemas (``login_event.avsc``, ``offer.avsc``) say what a record
holds; this module builds the login event from a ticket and names the Kafka
headers an offer carries, so the origin, the worker, the edges and the load
generators agree on them by construction. Times are µs since the Unix epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from schemas.tickets import Ticket

EXPIRES_AT_HEADER = "expires_at"
"""Offer header: when the offer's ticket expires (µs, ASCII digits); the expiry sweep and the
edges read it without decoding the offer."""

LOGIN_ACCEPTED_AT_HEADER = "login_accepted_at"
"""Offer header: when the origin accepted the login (µs, ASCII digits); the edges measure
positioning lag from it."""

OFFER_TIME_HEADERS = (EXPIRES_AT_HEADER, LOGIN_ACCEPTED_AT_HEADER)


class LoginEvent(TypedDict):
    """A record of ``logins`` (schema ``login_event.avsc``)."""

    ticket_id: str
    user_id: str
    ip: str
    user_agent: str | None
    login_accepted_at: int
    expires_at: int


def login_event(ticket: Ticket, user_id: str, ip: str, *, accepted_at_us: int,
                user_agent: str | None = None) -> LoginEvent:
    """The login event for ``ticket``: keyed on ``logins`` by ``user_id``, its offer by ticket id."""
    return {"ticket_id": ticket.ticket_id, "user_id": user_id, "ip": ip,
            "user_agent": user_agent, "login_accepted_at": accepted_at_us,
            "expires_at": ticket.expires_at_us}


def offer_headers(offer: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """The Kafka headers of an offer record, from the offer itself."""
    return [(EXPIRES_AT_HEADER, str(offer["expires_at"]).encode()),
            (LOGIN_ACCEPTED_AT_HEADER, str(offer["login_accepted_at"]).encode())]


# -- dead letters ----------------------------------------------------------------

ERROR_TYPE_HEADER = "error.type"
"""Dead-letter header: the exception's class name (``UnknownSchema``, ``LoginRejected``...)."""
ERROR_MESSAGE_HEADER = "error.message"
"""Dead-letter header: the exception's message, UTF-8, at most 4096 bytes."""
ERROR_STAGE_HEADER = "error.stage"
"""Dead-letter header: where it failed: ``decode``, ``validate``, ``engine`` or ``worker``."""
SOURCE_TOPIC_HEADER = "source.topic"
SOURCE_PARTITION_HEADER = "source.partition"
SOURCE_OFFSET_HEADER = "source.offset"
DEAD_LETTERED_AT_HEADER = "dead_lettered_at"
"""Dead-letter header: when the record was dead-lettered (µs, ASCII digits)."""

REPLAYED_FROM_HEADER = "replayed_from"
"""Header of a login put back on ``logins`` by ``positioning dlq replay``:
``<dead-letter topic>:<partition>:<offset>`` of the dead letter it came from. The worker
keeps it (and ``replayed_at``) on the record's new dead letter if the replay fails again."""
REPLAYED_AT_HEADER = "replayed_at"
"""Header of a replayed login: when it was replayed (µs, ASCII digits)."""
PROVENANCE_HEADERS = (REPLAYED_FROM_HEADER, REPLAYED_AT_HEADER)

ERROR_MESSAGE_MAX_BYTES = 4096


def dead_letter_headers(error_type: str, message: str, stage: str, source_topic: str,
                        source_partition: int, source_offset: int, at_us: int,
                        carried: Iterable[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """The Kafka headers of a dead letter: the error, where the record came from, and when.

    ``carried`` are headers of the failed record to keep: its provenance
    headers (``PROVENANCE_HEADERS``) are copied, any other is dropped.
    """
    headers = [
        (ERROR_TYPE_HEADER, error_type.encode()),
        (ERROR_MESSAGE_HEADER, message.encode()[:ERROR_MESSAGE_MAX_BYTES]),
        (ERROR_STAGE_HEADER, stage.encode()),
        (SOURCE_TOPIC_HEADER, source_topic.encode()),
        (SOURCE_PARTITION_HEADER, str(source_partition).encode()),
        (SOURCE_OFFSET_HEADER, str(source_offset).encode()),
        (DEAD_LETTERED_AT_HEADER, str(at_us).encode()),
    ]
    headers.extend((name, value) for name, value in carried if name in PROVENANCE_HEADERS)
    return headers
