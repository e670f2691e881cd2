"""Throughput against a bare baseline, in alternating rounds.

A small shared machine's speed drifts within minutes (docs/performance.md,
"Noise"), so one measurement of each side can put a change in the noise or
invent one. A comparison runs the bare endpoint, then the real one, then the
bare one again, and so on (bare, real, bare, real, ..., bare): each real run
is divided by the mean of the bare runs on either side of it, the figure is
the median of those ratios, and the lowest and highest are kept, so the
spread of a run is in the report instead of hidden in it.

A run in which any request failed (a non-2xx answer or a socket error)
measures something other than the path it names, such as 410s for expired
tickets that never touch storage; its figures are flagged, not trusted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.bench.wrk import WrkResult

# One timed run of wrk: (url, seconds) -> result.
RunLoad = Callable[[str, float], WrkResult]


@dataclass(frozen=True)
class Comparison:
    real: list[WrkResult]
    bare: list[WrkResult]  # one more than real: before each real run, and after the last

    def ratios(self) -> list[float]:
        return [real.requests_per_s / ((before.requests_per_s + after.requests_per_s) / 2)
                for real, before, after in zip(self.real, self.bare, self.bare[1:], strict=False)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios())

    @property
    def requests_per_s(self) -> float:
        return statistics.median(run.requests_per_s for run in self.real)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run.p99_ms for run in self.real)

    @property
    def failed_requests(self) -> int:
        return sum(run.non_2xx + run.errors for run in (*self.real, *self.bare))

    def as_dict(self) -> dict[str, Any]:
        ratios = self.ratios()
        return {"ratio": self.ratio, "ratio_low": min(ratios), "ratio_high": max(ratios),
                "ratios": ratios, "requests_per_s": self.requests_per_s,
                "p99_ms": self.p99_ms, "failed_requests": self.failed_requests,
                "real": [run.__dict__ for run in self.real],
                "bare": [run.__dict__ for run in self.bare]}


def compare(run: RunLoad, real_url: str, bare_url: str, rounds: int, seconds: float,
            warm_up_s: float = 2) -> Comparison:
    """Warm both up, then alternate bare and real ``rounds`` times and end with bare."""
    if rounds < 1:
        raise ValueError("a comparison needs at least one round")
    run(real_url, warm_up_s)
    run(bare_url, warm_up_s)
    bare = [run(bare_url, seconds)]
    real = []
    for _ in range(rounds):
        real.append(run(real_url, seconds))
        bare.append(run(bare_url, seconds))
    return Comparison(real=real, bare=bare)
