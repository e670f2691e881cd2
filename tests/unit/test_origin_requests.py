"""The origin's request checks: client address (X-Forwarded-For only from trusted proxies),
fields, body limit, and the OpenAPI stating the same rules."""

from __future__ import annotations

import re

import pytest
from starlette.requests import Request

from origin.openapi import openapi_document
from origin.requests import BadRequest, client_address, parse_login, read_json_body


def request_from(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "method": "POST", "path": "/login", "headers": headers,
                    "client": (peer, 50000), "query_string": b""})


def test_untrusted_peer_cannot_claim_an_address() -> None:
    assert client_address(request_from("203.0.113.9", "81.2.69.160"), ()) == "203.0.113.9"


def test_trusted_proxy_passes_on_the_nearest_untrusted_hop() -> None:
    trusted = ("10.0.0.1", "10.0.0.2")
    req = request_from("10.0.0.1", "1.1.1.1, 81.2.69.160, 10.0.0.2")
    assert client_address(req, trusted) == "81.2.69.160"


def test_garbled_forwarded_header_falls_back_to_the_peer() -> None:
    assert client_address(request_from("10.0.0.1", "not-an-ip"), ("10.0.0.1",)) == "10.0.0.1"


def test_ip_defaults_to_the_client_address_and_fields_are_named() -> None:
    assert parse_login({"user_id": "u"}, "8.8.8.8", None).ip == "8.8.8.8"
    with pytest.raises(BadRequest) as err:
        parse_login({"user_id": "u", "ip": 7}, "8.8.8.8", None)
    assert (err.value.status, err.value.field) == (422, "ip")


def _body_request(body: bytes, *, declared_length: bool = True) -> Request:
    headers = [(b"content-type", b"application/json")]
    if declared_length:
        headers.append((b"content-length", str(len(body)).encode()))
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "path": "/login", "headers": headers,
                    "query_string": b""}, receive)


async def test_the_openapi_states_the_limits_the_validation_applies() -> None:
    doc = openapi_document()
    user_id = doc["components"]["schemas"]["LoginRequest"]["properties"]["user_id"]
    longest = "a" * user_id["maxLength"]
    assert re.fullmatch(user_id["pattern"].strip("^$"), longest)
    assert parse_login({"user_id": longest}, "8.8.8.8", None).user_id == longest
    too_long = longest + "a"
    assert not re.fullmatch(user_id["pattern"].strip("^$"), too_long)
    with pytest.raises(BadRequest) as err:
        parse_login({"user_id": too_long}, "8.8.8.8", None)
    assert (err.value.status, err.value.field) == (422, "user_id")
    assert user_id["description"] in str(err.value)

    stated = doc["paths"]["/login"]["post"]["requestBody"]["description"]
    stated_limit = re.search(r"at most (\d+) bytes", stated)
    assert stated_limit is not None, stated
    limit = int(stated_limit.group(1))
    padding = limit - len(b'{"user_id": "a", "x": ""}')
    at_limit = b'{"user_id": "a", "x": "' + b"a" * padding + b'"}'
    assert len(at_limit) == limit
    assert (await read_json_body(_body_request(at_limit)))["user_id"] == "a"
    for declared in (True, False):
        with pytest.raises(BadRequest) as err:
            await read_json_body(_body_request(at_limit + b" ", declared_length=declared))
        assert err.value.status == 413
    assert str(limit) in doc["paths"]["/login"]["post"]["responses"]["413"]["description"]


@pytest.mark.parametrize(("mode", "client", "allowed"), [
    ("never", "127.0.0.1", False), ("local", "127.0.0.1", True), ("local", "::1", True),
    ("local", "127.0.0.2", True), ("local", "81.2.69.160", False), ("local", "testclient", False),
    ("any", "81.2.69.160", True)])
def test_only_a_caller_the_setting_names_may_choose_the_login_address(
        mode: str, client: str, allowed: bool) -> None:
    from origin.requests import BadRequest, may_choose_ip, parse_login

    assert may_choose_ip(mode, client) is allowed
    body = {"user_id": "u1", "ip": "81.2.69.160"}
    if allowed:
        assert parse_login(body, client, None, may_choose_ip(mode, client)).ip == "81.2.69.160"
    else:
        with pytest.raises(BadRequest, match="set by the network"):
            parse_login(body, client, None, may_choose_ip(mode, client))
    assert parse_login({"user_id": "u1"}, "81.2.69.160", None).ip == "81.2.69.160"
