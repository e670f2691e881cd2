"""Wall-clock time in the unit every record on the topics uses: microseconds since the Unix epoch."""

from __future__ import annotations

import time


def now_us() -> int:
    """Now, in µs since the Unix epoch (``login_accepted_at``, ``expires_at``, ``created_at``)."""
    return time.time_ns() // 1000
