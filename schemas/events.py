"""The records on the topics, built in one place: the login event and the offer's headers.

The Avro schemas (``login_event.avsc``, ``offer.avsc``) say what a record
holds; this module builds the login event from a ticket and names the Kafka
headers an offer carries, so the origin, the worker, the edges and the load
generators agree on them by construction. Times are µs since the Unix epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
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
