"""What an edge node's ``/metrics`` page says about it, in a few figures.

Parsed with prometheus_client's own text parser; the metric names are the
edge's (edge/metrics.py). Samples of every ``region`` label on the page are
added up (a node exposes one region, so this changes nothing for it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ops.quantiles import histogram_quantile

STORED = "edge_offers_stored"
LAG = "edge_partition_lag"
POSITIONING = "edge_positioning_seconds"


@dataclass(frozen=True)
class EdgeFigures:
    """Offers held, lag per partition of ``offers`` (records), and the positioning lag.

    ``positioning_p50_s`` / ``_p99_s``: seconds from login accepted at the
    origin to offer applied here, estimated from the histogram's buckets
    since the node started (None before its first offer).
    """

    offers_stored: int | None
    lag: dict[int, int] = field(default_factory=dict)
    positioned: int = 0
    positioning_p50_s: float | None = None
    positioning_p99_s: float | None = None

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    def to_json(self) -> dict[str, Any]:
        return {"offers_stored": self.offers_stored,
                "lag": {str(p): n for p, n in sorted(self.lag.items())},
                "total_lag": self.total_lag, "positioned": self.positioned,
                "positioning_p50_s": self.positioning_p50_s,
                "positioning_p99_s": self.positioning_p99_s}


def edge_figures(exposition: str) -> EdgeFigures:
    """The figures of one ``/metrics`` page (Prometheus text format).

    Raises:
        ValueError: the text is not in the Prometheus format (the parser's error).
    """
    stored: float | None = None
    lag: dict[int, int] = defaultdict(int)
    buckets: dict[float, float] = defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == STORED:
                stored = (stored or 0.0) + sample.value
            elif sample.name == LAG:
                lag[int(sample.labels["partition"])] += int(sample.value)  # OverflowError: +Inf
            elif sample.name == f"{POSITIONING}_bucket":
                buckets[float(sample.labels["le"])] += sample.value
    positioned = int(buckets.get(float("inf"), 0.0))
    return EdgeFigures(
        offers_stored=None if stored is None else int(stored), lag=dict(lag),
        positioned=positioned,
        positioning_p50_s=histogram_quantile(0.5, buckets.items()) if buckets else None,
        positioning_p99_s=histogram_quantile(0.99, buckets.items()) if buckets else None)
