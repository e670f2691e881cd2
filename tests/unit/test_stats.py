"""Latency summaries: percentiles in milliseconds from microsecond samples."""

from __future__ import annotations

from loadtest.stats import latency_summary


def test_percentiles_of_a_known_distribution() -> None:
    summary = latency_summary(range(1000, 101_000, 1000))  # 1..100 ms
    assert summary["n"] == 100
    assert 49.5 <= summary["p50_ms"] <= 50.5
    assert 98.5 <= summary["p99_ms"] <= 99.5
    assert 99.5 <= summary["max_ms"] <= 100.5


def test_no_samples() -> None:
    assert latency_summary([]) == {"n": 0}
