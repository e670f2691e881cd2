"""Which edge region serves a user: the IP's country → its market region → an edge.

In production GeoDNS or an anycast address sends each user to the nearest
edge. Locally every client is 127.0.0.1, so the origin tells the client its
region instead: the ``region`` field of the login answer and the
``REGION_COOKIE`` cookie, which browsers (EventSource included) send back
on ``/offers/…`` and by which the front door routes (devstack/front_door.py).

The table maps the engine's market regions (engine/markets.py) to edge
regions; a region without a configured edge falls back to the first
configured one (locally ``eu``, the first of ``POSITIONING_EDGES``).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.markets import country_of, market_for

# The cookie the front door routes `/offers/…` by; its value is an edge region.
REGION_COOKIE = "positioning_region"

# Market region (engine/markets.py) -> the edge region that serves it.
EDGE_FOR_MARKET = {
    "EU": "eu",
    "MEA": "eu",
    "NA": "us",
    "LATAM": "us",
    "APAC": "ap",
}


def edge_region(ip: str, configured: Sequence[str]) -> str:
    """The configured edge region for a client at ``ip`` (any valid IPv4/IPv6 address).

    Raises:
        ValueError: ``configured`` is empty.
    """
    if not configured:
        raise ValueError("no edge regions are configured")
    wanted = EDGE_FOR_MARKET.get(market_for(country_of(ip)).region)
    return wanted if wanted is not None and wanted in configured else configured[0]


def region_cookie(region: str) -> str:
    """The ``Set-Cookie`` value that routes the browser's `/offers/…` requests to ``region``.

    ``Path=/offers``: only offer lookups carry it. ``HttpOnly``: scripts
    never need it. ``SameSite=Lax``: not sent on cross-site subrequests.
    No ``Secure``: the local stack speaks plain HTTP.
    """
    return f"{REGION_COOKIE}={region}; Path=/offers; SameSite=Lax; HttpOnly"
