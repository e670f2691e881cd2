"""Ranking the catalog for one user in one market, and the discount rules.

Scores add up: the item's popularity, how much the user's region likes its
category, a boost for categories the user saw recently, and a small
per-user, per-item jitter (a hash, so it is deterministic) that keeps two
users in one country from seeing identical offers. No category fills more
than three of the eight places. Only a precomputed
candidate pool per region (plus the best items of the user's recent
categories) is scored, so ranking costs microseconds, not a catalog scan.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

from engine.catalog import Item, load_catalog
from engine.state import UserView

OFFER_SIZE = 8
POOL_PER_CATEGORY = 12
RECENT_BOOST = (0.6, 0.45, 0.35, 0.25, 0.15)

# How much each region favours each category (0..0.5).
_AFFINITY = {
    "EU": {"fashion": 0.4, "home": 0.3, "books": 0.3, "garden": 0.25, "travel": 0.2},
    "NA": {"electronics": 0.45, "sports": 0.35, "outdoor": 0.3, "toys": 0.2, "grocery": 0.15},
    "LATAM": {"music": 0.4, "sports": 0.35, "fashion": 0.3, "beauty": 0.3},
    "APAC": {"electronics": 0.5, "beauty": 0.4, "toys": 0.3, "grocery": 0.25},
    "MEA": {"fashion": 0.35, "electronics": 0.35, "travel": 0.3, "home": 0.2},
}


def region_affinity(region: str, category: str) -> float:
    return _AFFINITY.get(region, {}).get(category, 0.0)


@dataclass(frozen=True)
class Discount:
    code: str
    percent: int
    reason: str


WINBACK_AFTER_US = 7 * 24 * 3600 * 1_000_000


def discount_for(view: UserView, login_at: int) -> Discount:
    """The discount rules, most specific first."""
    if view.visit == 1:
        return Discount("WELCOME15", 15, "first visit")
    if view.last_login_at is not None and login_at - view.last_login_at > WINBACK_AFTER_US:
        return Discount("WINBACK20", 20, "welcome back after a week away")
    if view.visit >= 5:
        return Discount("LOYAL10", 10, f"visit number {view.visit}")
    return Discount("NONE", 0, "no discount applies")


JITTER_WEIGHT = 0.1
MAX_PER_CATEGORY = 3


@cache
def _region_pool(region: str) -> tuple[tuple[float, Item], ...]:
    """Items that can reach a top-N in this region: within the jitter of the N-th best."""
    scored = sorted(((it.popularity + region_affinity(region, it.category), it)
                     for it in load_catalog()), key=lambda s: (-s[0], s[1].index))
    picked = _pick_diverse([(base, -it.index, it) for base, it in scored], OFFER_SIZE)
    cutoff = picked[-1][0] - JITTER_WEIGHT
    return tuple(s for s in scored if s[0] >= cutoff)


def _pick_diverse(ranked: list[tuple[float, int, Item]], size: int) -> list[tuple[float, int, Item]]:
    """The best ``size`` entries of an already sorted list, at most MAX_PER_CATEGORY each."""
    per_category: dict[str, int] = {}
    picked = []
    for entry in ranked:
        category = entry[2].category
        if per_category.get(category, 0) < MAX_PER_CATEGORY:
            per_category[category] = per_category.get(category, 0) + 1
            picked.append(entry)
            if len(picked) == size:
                break
    return picked


@cache
def _category_pool(region: str, category: str) -> tuple[tuple[float, Item], ...]:
    items = [(it.popularity + region_affinity(region, it.category), it)
             for it in load_catalog() if it.category == category]
    items.sort(key=lambda s: (-s[0], s[1].index))
    return tuple(items[:POOL_PER_CATEGORY])


@cache
def _region_indexes(region: str) -> frozenset[int]:
    return frozenset(it.index for _, it in _region_pool(region))


def rank(user_id: str, region: str, view: UserView,
         size: int = OFFER_SIZE) -> list[tuple[Item, float]]:
    """The top ``size`` items with their scores, best first, ties broken by catalog order."""
    candidates = list(_region_pool(region))
    boosts: dict[str, float] = {}
    if view.recent_categories:
        in_pool = _region_indexes(region)
        for position, category in enumerate(view.recent_categories[: len(RECENT_BOOST)]):
            boosts[category] = RECENT_BOOST[position]
            candidates.extend(entry for entry in _category_pool(region, category)
                              if entry[1].index not in in_pool)
    seed = zlib.crc32(user_id.encode())
    weight = JITTER_WEIGHT / 65535.0
    if boosts:
        scored = [(base + boosts.get(it.category, 0.0)
                   + weight * ((((it.index + 1) * 2654435761) ^ seed) & 0xFFFF), -it.index, it)
                  for base, it in candidates]
    else:
        scored = [(base + weight * ((((it.index + 1) * 2654435761) ^ seed) & 0xFFFF), -it.index, it)
                  for base, it in candidates]
    scored.sort(reverse=True)  # (score, -index) are unique, so items are never compared
    return [(it, round(score, 6)) for score, _, it in _pick_diverse(scored, size)]
