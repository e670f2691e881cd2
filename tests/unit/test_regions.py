"""The edge region a login answer names: IP country → market region → a configured edge."""

from __future__ import annotations

import pytest

from origin.regions import EDGE_FOR_MARKET, edge_region, region_cookie

EU_US = ("eu", "us")


@pytest.mark.parametrize(("ip", "region"), [
    ("81.2.69.160", "eu"),      # GB: market EU
    ("85.214.132.117", "eu"),   # DE
    ("8.8.8.8", "us"),          # US: NA
    ("200.147.67.142", "us"),   # BR: LATAM
    ("127.0.0.1", "us"),        # no country: the default market (NA)
])
def test_the_market_region_picks_the_edge(ip: str, region: str) -> None:
    assert edge_region(ip, EU_US) == region


def test_a_region_without_a_configured_edge_falls_back_to_the_first_edge() -> None:
    assert EDGE_FOR_MARKET["APAC"] == "ap"
    assert edge_region("133.11.0.1", EU_US) == "eu"            # JP, no `ap` edge here
    assert edge_region("133.11.0.1", ("us", "ap")) == "ap"
    assert edge_region("81.2.69.160", ("us",)) == "us"


def test_no_edge_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="no edge regions"):
        edge_region("8.8.8.8", ())


def test_the_cookie_is_sent_back_only_on_offer_lookups() -> None:
    assert region_cookie("eu") == "positioning_region=eu; Path=/offers; SameSite=Lax; HttpOnly"


def test_an_origin_without_edges_refuses_to_start() -> None:
    from origin.app import create_app
    from runtime.settings import Settings

    with pytest.raises(ValueError, match="POSITIONING_EDGES lists no edge"):
        create_app(Settings(edges=(), ticket_secret="test:" + "k" * 32))
