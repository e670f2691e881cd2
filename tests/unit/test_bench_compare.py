"""Throughput comparisons alternate with the baseline and keep their spread."""

from __future__ import annotations

import pytest

from loadtest.bench.compare import compare
from loadtest.bench.wrk import WrkResult


def _result(rps: float, p99: float = 5.0, non_2xx: int = 0) -> WrkResult:
    return WrkResult(requests_per_s=rps, p50_ms=1.0, p99_ms=p99, non_2xx=non_2xx, errors=0)


class ScriptedLoad:
    """Answers each timed run from a script, and records the order of the runs."""

    def __init__(self, real: list[WrkResult], bare: list[WrkResult]) -> None:
        self.queues = {"real": list(real), "bare": list(bare)}
        self.calls: list[tuple[str, float]] = []

    def __call__(self, url: str, seconds: float) -> WrkResult:
        side = "real" if "real" in url else "bare"
        self.calls.append((side, seconds))
        if seconds == 2:  # warm-up
            return _result(1.0)
        return self.queues[side].pop(0)


def test_runs_alternate_and_end_with_the_baseline() -> None:
    load = ScriptedLoad([_result(50)] * 3, [_result(100)] * 4)
    compare(load, "http://real", "http://bare", rounds=3, seconds=8)
    assert load.calls == [("real", 2), ("bare", 2), ("bare", 8), ("real", 8), ("bare", 8),
                          ("real", 8), ("bare", 8), ("real", 8), ("bare", 8)]


def test_each_round_is_divided_by_the_baselines_around_it_and_the_median_is_the_figure() -> None:
    # The machine slows down during the run: the baseline goes 100 -> 60.
    bare = [_result(100), _result(80), _result(80), _result(60)]
    real = [_result(45, p99=4), _result(60, p99=9), _result(21, p99=6)]
    result = compare(ScriptedLoad(real, bare), "http://real", "http://bare", rounds=3, seconds=8)
    assert result.ratios() == pytest.approx([0.5, 0.75, 0.3])
    assert result.ratio == pytest.approx(0.5)
    assert result.requests_per_s == 45 and result.p99_ms == 6
    summary = result.as_dict()
    assert summary["ratio_low"] == pytest.approx(0.3) and summary["ratio_high"] == pytest.approx(0.75)
    assert len(summary["real"]) == 3 and len(summary["bare"]) == 4


def test_failed_requests_on_either_side_are_counted() -> None:
    bare = [_result(100), _result(100, non_2xx=7)]
    real = [_result(90, non_2xx=5)]
    result = compare(ScriptedLoad(real, bare), "http://real", "http://bare", rounds=1, seconds=4)
    assert result.failed_requests == 12


def test_a_comparison_needs_a_round() -> None:
    with pytest.raises(ValueError):
        compare(ScriptedLoad([], []), "http://real", "http://bare", rounds=0, seconds=4)
