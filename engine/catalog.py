"""The product catalog that ships with the project, and its generator.

``data/catalog.json.gz`` holds a few thousand generated items, each with a
category, a popularity and a price in every supported currency (minor units,
rounded the way shops price in that currency). ``python -m
engine.catalog`` regenerates it from a fixed seed; a unit test
checks that the shipped file is exactly what the generator makes.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from engine.markets import CURRENCIES, ZERO_DECIMAL

CATALOG_FILE = "catalog.json.gz"
SEED = 20261126
ITEM_COUNT = 3000

CATEGORIES = ("electronics", "books", "fashion", "home", "garden", "sports", "toys",
              "beauty", "grocery", "music", "outdoor", "travel")

# Units of each currency per US dollar: fixed, so prices are reproducible.
FX_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0, "CAD": 1.36, "AUD": 1.52,
              "CHF": 0.88, "SEK": 10.6, "NOK": 10.7, "DKK": 6.9, "PLN": 3.95, "CNY": 7.2,
              "INR": 83.0, "BRL": 5.0, "MXN": 17.0, "KRW": 1350.0, "SGD": 1.34, "NZD": 1.65,
              "ZAR": 18.5, "TRY": 32.0}

_ADJECTIVES = ("Classic", "Smart", "Eco", "Pro", "Compact", "Deluxe", "Urban", "Nordic",
               "Vintage", "Ultra", "Essential", "Premium", "Travel", "Daily", "Bold", "Soft")
_NOUNS = {
    "electronics": ("Headphones", "Speaker", "Charger", "Tablet", "Camera", "Watch"),
    "books": ("Novel", "Cookbook", "Atlas", "Biography", "Guide", "Anthology"),
    "fashion": ("Jacket", "Sneakers", "Scarf", "Backpack", "Sunglasses", "Shirt"),
    "home": ("Lamp", "Kettle", "Blanket", "Mug Set", "Cushion", "Clock"),
    "garden": ("Planter", "Hose", "Shears", "Seed Kit", "Bench", "Lantern"),
    "sports": ("Yoga Mat", "Dumbbells", "Racket", "Bottle", "Helmet", "Ball"),
    "toys": ("Puzzle", "Robot", "Blocks", "Plush", "Kite", "Board Game"),
    "beauty": ("Serum", "Palette", "Brush Set", "Cream", "Perfume", "Mask"),
    "grocery": ("Coffee", "Tea Box", "Chocolate", "Olive Oil", "Spice Kit", "Honey"),
    "music": ("Vinyl", "Ukulele", "Keyboard", "Microphone", "Drum Pad", "Strings"),
    "outdoor": ("Tent", "Sleeping Bag", "Stove", "Compass", "Hammock", "Headlamp"),
    "travel": ("Suitcase", "Pillow", "Adapter", "Organizer", "Wallet", "Tag Set"),
}
_PRICE_RANGE_USD = {"electronics": (20, 900), "books": (6, 60), "fashion": (15, 300),
                    "home": (10, 250), "garden": (8, 400), "sports": (10, 350), "toys": (8, 120),
                    "beauty": (6, 150), "grocery": (3, 60), "music": (10, 800),
                    "outdoor": (10, 600), "travel": (10, 400)}


@dataclass(frozen=True)
class Item:
    index: int
    sku: str
    name: str
    category: str
    popularity: float
    prices: dict[str, int]  # currency -> minor units


def shop_price(usd: float, currency: str) -> int:
    """A price in minor units, rounded as shops do: x.99, or whole hundreds of yen/won."""
    amount = usd * FX_PER_USD[currency]
    if currency in ZERO_DECIMAL:
        return max(100, int(round(amount / 100.0)) * 100 - 10 * (amount > 1000))
    whole = max(1, int(amount))
    return whole * 100 + 99


def generate(seed: int = SEED, count: int = ITEM_COUNT) -> list[dict[str, object]]:
    rng = random.Random(seed)
    items = []
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        lo, hi = _PRICE_RANGE_USD[category]
        usd = round(lo * (hi / lo) ** rng.random(), 2)  # log-uniform: many cheap, few dear
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS[category])} {rng.randint(100, 999)}"
        items.append({
            "sku": f"SKU-{i:05d}",
            "name": name,
            "category": category,
            "popularity": round(rng.random() ** 2, 4),  # a long tail
            "prices": {c: shop_price(usd, c) for c in CURRENCIES},
        })
    return items


def serialize(items: list[dict[str, object]]) -> bytes:
    text = json.dumps(items, separators=(",", ":"), sort_keys=True).encode()
    return gzip.compress(text, mtime=0)


@cache
def load_catalog() -> tuple[Item, ...]:
    raw = resources.files("engine").joinpath("data", CATALOG_FILE).read_bytes()
    rows = json.loads(gzip.decompress(raw))
    return tuple(
        Item(i, r["sku"], r["name"], r["category"], float(r["popularity"]), dict(r["prices"]))
        for i, r in enumerate(rows)
    )


def main() -> None:
    target = Path(__file__).parent / "data" / CATALOG_FILE
    target.write_bytes(serialize(generate()))
    print(f"wrote {ITEM_COUNT} items to {target}")


if __name__ == "__main__":
    main()
