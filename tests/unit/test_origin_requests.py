"""The origin's client address: X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from origin.requests import BadRequest, client_address, parse_login


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
