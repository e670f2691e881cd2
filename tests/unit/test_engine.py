"""The offer engine: markets, ranking, discounts, state, determinism, the shipped catalog."""

from __future__ import annotations

import gzip
from importlib import resources

import pytest

from engine import catalog
from engine.markets import country_of, market_for
from engine.offers import compute_offer, shown_categories
from engine.ranking import WINBACK_AFTER_US, discount_for
from engine.state import (
    RECENT_LOGINS,
    Position,
    UserView,
    new_user_view,
    next_state,
    view_for_login,
)
from engine.validation import LoginRejected, validate_login
from tests.unit.avro_check import assert_valid_offer

DAY_US = 24 * 3600 * 1_000_000


def login(user: str = "alice", ip: str = "81.2.69.160", ticket: str = "t1", at: int = 10 * DAY_US
          ) -> dict[str, object]:
    return {"ticket_id": ticket, "user_id": user, "ip": ip, "user_agent": None,
            "login_accepted_at": at, "expires_at": at + 900_000_000}


@pytest.mark.parametrize("ip,country,currency,locale", [
    ("81.2.69.160", "GB", "GBP", "en-GB"),
    ("133.11.0.1", "JP", "JPY", "ja-JP"),
    ("8.8.8.8", "US", "USD", "en-US"),
    ("10.0.0.1", "ZZ", "USD", "en-US"),
])
def test_market_from_ip(ip: str, country: str, currency: str, locale: str) -> None:
    assert country_of(ip) == country
    offer = compute_offer(login(ip=ip), new_user_view(), created_at=1)
    assert (offer["country"], offer["currency"], offer["locale"]) == (country, currency, locale)
    assert_valid_offer(offer)


def test_euro_countries_get_euros_and_their_language() -> None:
    assert market_for("DE").currency == "EUR" and market_for("DE").locale == "de-DE"
    assert market_for("FR").locale == "fr-FR"


def test_offer_is_deterministic_and_personal() -> None:
    a1 = compute_offer(login("alice"), new_user_view(), created_at=5)
    a2 = compute_offer(login("alice"), new_user_view(), created_at=5)
    b = compute_offer(login("bob"), new_user_view(), created_at=5)
    assert a1 == a2
    assert [i["sku"] for i in a1["items"]] != [i["sku"] for i in b["items"]]
    assert len(a1["items"]) == 8
    categories = [i["category"] for i in a1["items"]]
    assert max(categories.count(c) for c in categories) <= 3


def test_recent_categories_are_ranked_up() -> None:
    view = UserView(visit=2, recent_categories=("toys",), last_login_at=DAY_US, last_country="GB")
    offer = compute_offer(login(), view, created_at=1)
    assert offer["items"][0]["category"] == "toys"


def test_prices_follow_the_discount() -> None:
    offer = compute_offer(login(), new_user_view(), created_at=1)
    assert offer["discount"]["code"] == "WELCOME15"
    for item in offer["items"]:
        assert item["offer_price"] == item["price"] * 85 // 100


@pytest.mark.parametrize("visit,last,code", [
    (1, None, "WELCOME15"), (2, 9 * DAY_US, "NONE"), (5, 9 * DAY_US, "LOYAL10"),
    (3, 10 * DAY_US - WINBACK_AFTER_US - 1, "WINBACK20"),
])
def test_discount_rules(visit: int, last: int | None, code: str) -> None:
    view = UserView(visit=visit, recent_categories=(), last_login_at=last, last_country="GB")
    assert discount_for(view, 10 * DAY_US).code == code


def test_state_counts_each_login_once_and_replays_identically() -> None:
    first = login(ticket="t1", at=DAY_US)
    view1, replayed = view_for_login(None, "t1", Position(0, 10))
    assert (view1.visit, replayed) == (1, False)
    offer1 = compute_offer(first, view1, created_at=0)
    state = next_state(None, "t1", view1, Position(0, 10), DAY_US, "GB",
                       shown_categories(offer1), first["expires_at"])

    view2, replayed = view_for_login(state, "t2", Position(0, 15))
    assert (view2.visit, replayed) == (2, False)
    assert view2.recent_categories == tuple(shown_categories(offer1))
    state2 = next_state(state, "t2", view2, Position(0, 15), 2 * DAY_US, "GB", ["toys"], 0)

    again, replayed = view_for_login(state2, "t1", Position(0, 10))  # t1 delivered again
    assert replayed and again == view1
    assert compute_offer(first, again, created_at=0) == offer1


def test_replay_older_than_the_remembered_views_keeps_its_visit_number() -> None:
    state = None
    for n in range(RECENT_LOGINS + 10):
        view, replayed = view_for_login(state, f"t{n}", Position(2, 100 + n))
        assert not replayed and view.visit == n + 1
        state = next_state(state, f"t{n}", view, Position(2, 100 + n), n, "GB", ["toys"], 0)
    old, replayed = view_for_login(state, "t3", Position(2, 103))
    assert replayed and old.visit == 4
    assert state["visits"] == RECENT_LOGINS + 10  # nothing counted twice


@pytest.mark.parametrize("field,value", [("user_id", ""), ("user_id", "a b"), ("ip", "999.1.1.1"),
                                         ("expires_at", 0)])
def test_logins_the_engine_refuses(field: str, value: object) -> None:
    bad = login()
    bad[field] = value
    with pytest.raises(LoginRejected):
        validate_login(bad)


def test_shipped_catalog_is_what_the_generator_makes() -> None:
    shipped = resources.files("engine").joinpath("data", catalog.CATALOG_FILE).read_bytes()
    assert gzip.decompress(shipped) == gzip.decompress(catalog.serialize(catalog.generate()))
    items = catalog.load_catalog()
    assert len(items) == catalog.ITEM_COUNT
    assert {it.category for it in items} == set(catalog.CATEGORIES)
    assert all(set(it.prices) == set(catalog.FX_PER_USD) for it in items)


def test_ip_validation_agrees_with_the_ipaddress_module() -> None:
    """The dotted-quad fast path accepts and normalises exactly what ipaddress does."""
    import ipaddress

    from engine.validation import LoginRejected, validate_ip

    candidates = ["81.2.69.160", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4.5",
                  "256.1.1.1", "1.2.3.4\x00", " 1.2.3.4", "1.2.3.4 ", "1.02.3.4", "0x1.2.3.4",
                  "::1", "2001:DB8::1", "::ffff:1.2.3.4", "", "localhost"]
    for ip in candidates:
        try:
            expected: str | None = str(ipaddress.ip_address(ip))
        except ValueError:
            expected = None
        try:
            got: str | None = validate_ip(ip)
        except LoginRejected:
            got = None
        assert got == expected, ip
