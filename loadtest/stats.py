"""Latency percentiles with HdrHistogram, one shape for every report."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

MAX_TRACKED_US = 600_000_000  # ten minutes


def latency_summary(values_us: Iterable[int]) -> dict[str, float]:
    """n, p50/p95/p99/max and mean in milliseconds, from microsecond samples."""
    histogram = HdrHistogram(1, MAX_TRACKED_US, 3)
    n = 0
    for v in values_us:
        histogram.record_value(min(MAX_TRACKED_US, max(1, v)))
        n += 1
    if not n:
        return {"n": 0}
    return {
        "n": n,
        "p50_ms": histogram.get_value_at_percentile(50) / 1000,
        "p95_ms": histogram.get_value_at_percentile(95) / 1000,
        "p99_ms": histogram.get_value_at_percentile(99) / 1000,
        "max_ms": histogram.get_max_value() / 1000,
        "mean_ms": histogram.get_mean_value() / 1000,
    }
