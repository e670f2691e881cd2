"""CPU shares of the stack's processes, read from /proc."""

from __future__ import annotations

import os
import sys
import time

import pytest

from loadtest.bench.cpu import CpuShares, cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_a_busy_process_shows_its_share_and_a_gone_one_is_left_out() -> None:
    shares = CpuShares({"me": os.getpid(), "gone": 2**22 + 12345, "unknown": None})
    deadline = time.perf_counter() + 0.3
    while time.perf_counter() < deadline:
        pass
    result = shares.stop()
    assert set(result) == {"me"}
    assert 0.2 <= result["me"] <= 1.5


def test_cpu_seconds_of_a_missing_process_is_none() -> None:
    assert cpu_seconds(2**22 + 12345) is None
    own = cpu_seconds(os.getpid())
    assert own is not None and own > 0
