"""Reading and validating the origin's request bodies, and finding the client address."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from engine.validation import LoginRejected, validate_ip, validate_user_id
from runtime.strict_parsing import ascii_int

# The limits the validation below applies; the OpenAPI description
# (origin/openapi.py) is derived from them.
MAX_BODY_BYTES = 4 * 1024
MAX_IDEMPOTENCY_KEY_LEN = 255
# Visible ASCII without '"' and '\\' (the inside of an sf-string, less space).
IDEMPOTENCY_KEY_PATTERN = rf'[!#-\[\]-~]{{1,{MAX_IDEMPOTENCY_KEY_LEN}}}'
IDEMPOTENCY_KEY_RULE = (f"1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters "
                        "(no space, quote or backslash)")
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
IDEMPOTENCY_HEADER = "idempotency-key"


class BadRequest(Exception):
    """A client error with its HTTP status and, where it applies, the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(frozen=True)
class LoginRequest:
    user_id: str
    ip: str
    user_agent: str | None


def require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json`` (UTF-8, the JSON default)."""
    declared = request.headers.get("content-type", "")
    media_type, _, params = declared.partition(";")
    if media_type.strip().lower() != "application/json":
        raise BadRequest(415, "Content-Type must be application/json")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "charset" and value.strip('"').lower() != "utf-8":
            raise BadRequest(415, "the body must be UTF-8 JSON")


async def read_json_body(request: Request) -> dict[str, Any]:
    """The JSON object in the body, at most MAX_BODY_BYTES, or BadRequest (400, 413, 415)."""
    require_json(request)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = ascii_int(declared, "content-length")
        except ValueError as exc:
            raise BadRequest(400, str(exc)) from exc
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        data = orjson.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(400, "body must be a JSON object")
    return data


def client_address(request: Request, trusted_proxies: tuple[str, ...]) -> str:
    """The peer address, or the nearest untrusted X-Forwarded-For hop behind trusted proxies."""
    peer = request.client.host if request.client else "127.0.0.1"
    if peer not in trusted_proxies:
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled header: trust only what we saw
        if hop not in trusted_proxies:
            return hop
    return peer


def may_choose_ip(mode: str, client: str) -> bool:
    """Whether a client at address ``client`` may give the login's ``ip`` itself, under
    ``login_ip_from_body`` = ``mode``."""
    if mode == "any":
        return True
    if mode != "local":
        return False
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


def parse_login(data: dict[str, Any], fallback_ip: str, user_agent: str | None,
                ip_from_body: bool = False) -> LoginRequest:
    """The login request in ``data``; BadRequest (422, naming the field) if a field is
    unknown, missing or invalid, or if ``ip`` is given and ``ip_from_body`` is false (the
    address is the network's: ``fallback_ip``, the client's own)."""
    unknown = sorted(set(data) - {"user_id", "ip"})
    if unknown:
        raise BadRequest(422, f"unknown field {unknown[0]!r}", unknown[0])
    if "ip" in data and not ip_from_body:
        raise BadRequest(422, "ip is the address the login comes from, set by the network, "
                              "not the body (a test stack may allow it: "
                              "POSITIONING_LOGIN_IP_FROM_BODY)", "ip")
    if "user_id" not in data:
        raise BadRequest(422, "user_id is required", "user_id")
    try:
        user_id = validate_user_id(data["user_id"])
    except LoginRejected as exc:
        raise BadRequest(422, str(exc), "user_id") from exc
    ip = data["ip"] if "ip" in data else fallback_ip
    try:
        ip = validate_ip(ip)
    except LoginRejected as exc:
        raise BadRequest(422, str(exc), "ip") from exc
    return LoginRequest(user_id=user_id, ip=ip, user_agent=(user_agent or None) and user_agent[:256])


def idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header's key, or None when absent; BadRequest if malformed.

    The IETF httpapi draft (draft-ietf-httpapi-idempotency-key-header) makes
    the value a structured-field string: ``"..."``; inside, 1 to
    ``MAX_IDEMPOTENCY_KEY_LEN`` visible ASCII characters other than ``"`` and ``\\`` (no spaces). A bare
    value of the same characters is taken too (what most clients send).
    One header only.
    """
    values = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(400, "Idempotency-Key given more than once", "Idempotency-Key")
    raw = values[0]
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
    if not _IDEMPOTENCY_KEY.fullmatch(raw):
        raise BadRequest(400, f"Idempotency-Key must be {IDEMPOTENCY_KEY_RULE}", "Idempotency-Key")
    return raw
