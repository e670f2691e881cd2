"""What the engine accepts as a login; anything else is dead-lettered, not guessed at."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

# The one definition of a user id: the validation below and the origin's
# OpenAPI description are both derived from these.
USER_ID_MAX_LENGTH = 128
USER_ID_SYMBOLS = "._@+-"
USER_ID_PATTERN = f"[A-Za-z0-9{USER_ID_SYMBOLS}]{{1,{USER_ID_MAX_LENGTH}}}"
USER_ID_RULE = f"1-{USER_ID_MAX_LENGTH} characters of letters, digits and {USER_ID_SYMBOLS}"
USER_ID = re.compile(USER_ID_PATTERN)


class LoginRejected(ValueError):
    """A decodable login that the engine refuses to compute an offer for."""


def validate_user_id(user_id: object) -> str:
    """``user_id`` if it is a string matching ``USER_ID_PATTERN``; LoginRejected otherwise."""
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise LoginRejected(f"user_id must be {USER_ID_RULE}")
    return user_id


def validate_ip(ip: object) -> str:
    """``ip`` in canonical form if it is an IPv4 or IPv6 address (no zone id); LoginRejected
    otherwise."""
    if not isinstance(ip, str):
        raise LoginRejected("ip must be a string")
    if "%" in ip:  # an IPv6 zone id: ipaddress takes it, our contract does not
        raise LoginRejected(f"ip {ip[:64]!r} is not an IPv4 or IPv6 address")
    if ":" not in ip:
        # The common case, a canonical dotted quad, checked by the C library, far
        # cheaper than ipaddress (docs/performance.md); the origin and the worker
        # pay this per login.
        try:
            if socket.inet_ntoa(socket.inet_pton(socket.AF_INET, ip)) == ip:
                return ip
        except (OSError, ValueError):
            pass  # not canonical IPv4: ipaddress decides, and says why
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError as exc:
        raise LoginRejected(f"ip {ip[:64]!r} is not an IPv4 or IPv6 address") from exc


def validate_login(login: dict[str, Any]) -> None:
    """Return if the decoded login is one the engine computes an offer for; else LoginRejected."""
    validate_user_id(login["user_id"])
    validate_ip(login["ip"])
    if not login["ticket_id"]:
        raise LoginRejected("ticket_id is empty")
    if login["expires_at"] <= login["login_accepted_at"]:
        raise LoginRejected("expires_at is not after login_accepted_at")
