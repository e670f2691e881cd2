"""Computing the offer record: market from IP, ranking, discount, prices."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from engine.markets import country_of, market_for
from engine.ranking import discount_for, rank
from engine.state import UserView

ENGINE_VERSION = "1"


def compute_offer(login: Mapping[str, Any], view: UserView, created_at: int) -> dict[str, Any]:
    """The Offer record (schemas/offer.avsc) for one login, given the user's view.

    Deterministic: the same login, view and created_at give the same offer.
    """
    country = country_of(login["ip"])
    market = market_for(country)
    discount = discount_for(view, login["login_accepted_at"])
    items = []
    for item, score in rank(login["user_id"], market.region, view):
        price = item.prices[market.currency]
        items.append({
            "sku": item.sku,
            "name": item.name,
            "category": item.category,
            "price": price,
            "offer_price": price * (100 - discount.percent) // 100,
            "score": score,
        })
    return {
        "ticket_id": login["ticket_id"],
        "user_id": login["user_id"],
        "country": market.country,
        "currency": market.currency,
        "locale": market.locale,
        "items": items,
        "discount": {"code": discount.code, "percent": discount.percent, "reason": discount.reason},
        "visit": view.visit,
        "login_accepted_at": login["login_accepted_at"],
        "created_at": created_at,
        "expires_at": login["expires_at"],
        "engine_version": ENGINE_VERSION,
    }


def shown_categories(offer: dict[str, Any], top: int = 2) -> list[str]:
    """The categories the user was shown first: they become the user's recent ones."""
    seen: list[str] = []
    for item in offer["items"]:
        if item["category"] not in seen:
            seen.append(item["category"])
        if len(seen) == top:
            break
    return seen


async def simulate_model_latency(latency_ms: float) -> None:
    """Stand-in for a model call: asynchronous, so it does not block other logins."""
    if latency_ms > 0:
        await asyncio.sleep(latency_ms / 1000.0)
