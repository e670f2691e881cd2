"""A quantile estimated from a Prometheus histogram's cumulative buckets.

The same estimate as PromQL's ``histogram_quantile``: find the bucket the
wanted rank falls in and interpolate linearly inside it, assuming the
observations are spread evenly between its lower and upper bound. So the
answer is only as fine as the buckets (edge/metrics.py ``LATENCY_BUCKETS``),
and a rank in the ``+Inf`` bucket answers the highest finite bound (the
estimate cannot say more than "above it").
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0 ≤ q ≤ 1) of a histogram, in the unit of its bucket bounds.

    ``buckets`` are ``(upper bound, cumulative count)`` pairs, the ``le``
    label and value of the ``_bucket`` samples, in any order; the ``+Inf``
    bucket holds the total. Returns None when there are no observations.

    Raises:
        ValueError: ``q`` is outside [0, 1], or there is no ``+Inf`` bucket.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        raise ValueError("a histogram needs its +Inf bucket (the total count)")
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in ordered:
        if count >= rank and count > lower_count:
            if math.isinf(upper_bound):
                return lower_bound
            if upper_bound <= 0:
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (
                count - lower_count)
        lower_bound, lower_count = upper_bound, count
    return lower_bound
