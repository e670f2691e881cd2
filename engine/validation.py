"""What the engine accepts as a login; anything else is dead-lettered, not guessed at."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

# The one definition of a user id: the OpenAPI description uses the same pattern.
USER_ID_PATTERN = "[A-Za-z0-9._@+-]{1,128}"
USER_ID = re.compile(USER_ID_PATTERN)


class LoginRejected(ValueError):
    """A decodable login that the engine refuses to compute an offer for."""


def validate_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise LoginRejected("user_id must be 1-128 characters of letters, digits and ._@+-")
    return user_id


def validate_ip(ip: object) -> str:
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
    validate_user_id(login["user_id"])
    validate_ip(login["ip"])
    if not login["ticket_id"]:
        raise LoginRejected("ticket_id is empty")
    if login["expires_at"] <= login["login_accepted_at"]:
        raise LoginRejected("expires_at is not after login_accepted_at")
