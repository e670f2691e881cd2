"""Synthetic users for load: IPs spread over many countries, and repeat visitors."""

from __future__ import annotations

import ipaddress
import random
from collections import defaultdict
from functools import cache

from iptocc import country_code

from engine.markets import known_countries


@cache
def ips_by_country(seed: int = 7, samples: int = 60_000) -> dict[str, tuple[str, ...]]:
    """Public IPv4 addresses the offline database places in each known country."""
    rng = random.Random(seed)
    wanted = set(known_countries())
    candidates: list[str] = []
    while len(candidates) < samples:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global:
            candidates.append(str(address))
    found: dict[str, list[str]] = defaultdict(list)
    for ip, cc in zip(candidates, country_code(candidates), strict=True):
        if cc in wanted and len(found[cc]) < 50:
            found[cc].append(ip)
    return {cc: tuple(ips) for cc, ips in found.items()}


class SyntheticUsers:
    """Draws (user_id, ip) pairs: a skewed pool of users, each living in one country."""

    def __init__(self, users: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        pools = ips_by_country()
        self.countries = sorted(pools)
        self.users = max(1, users)
        self._home: dict[int, str] = {}
        self._pools = pools

    def draw(self) -> tuple[str, str]:
        # Pareto-skewed: a few users log in often, most rarely.
        n = min(int(self.rng.paretovariate(1.2)) - 1, self.users - 1) \
            if self.rng.random() < 0.5 else self.rng.randrange(self.users)
        ip = self._home.get(n)
        if ip is None:
            country = self.countries[n % len(self.countries)]
            ip = self.rng.choice(self._pools[country])
            self._home[n] = ip
        return f"user-{n:07d}", ip
