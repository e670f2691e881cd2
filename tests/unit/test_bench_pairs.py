"""The bench's by-hand tools: A/B pairs (parsing, figures, table) and the own-work timer."""

from __future__ import annotations

import pytest

from loadtest.bench.own_work import logins, time_steps
from loadtest.bench.pairs import figures, parse_side, table


def test_a_side_is_settings_fields_with_semicolons_for_commas() -> None:
    assert parse_side("origin_linger_ms=5, kafka_server_properties=num.io.threads=2;a=b") == {
        "origin_linger_ms": "5", "kafka_server_properties": "num.io.threads=2,a=b"}
    assert parse_side("") == {}
    with pytest.raises(ValueError, match="field of Settings"):
        parse_side("no_such_setting=1")
    with pytest.raises(ValueError, match="field=value"):
        parse_side("origin_linger_ms")


def _pipeline(broker: float, worker: float, p50: float) -> dict:
    return {"positioning": {"100": {
        "cpu_share_of_one_core": {"broker": broker, "worker": worker, "load generator": 0.5},
        "all": {"p50_ms": p50, "p99_ms": 2 * p50}}},
        "throughput": {"offers_per_s": 900.0}}


def test_figures_leave_the_load_generator_out() -> None:
    got = figures(_pipeline(0.2, 0.3, 7.0))["100"]
    assert got["stack_cores"] == pytest.approx(0.5)
    assert got["stack_cpu_ms_per_login"] == pytest.approx(5.0)
    assert (got["broker_cores"], got["p50_ms"], got["p99_ms"]) == (0.2, 7.0, 14.0)


def test_the_table_divides_each_b_round_by_its_pair() -> None:
    report = {"sides": {"A": {}, "B": {"origin_linger_ms": "5"}},
              "rounds": {"A": [{"figures": figures(_pipeline(0.2, 0.3, 8.0))}],
                         "B": [{"figures": figures(_pipeline(0.1, 0.3, 8.0))}]}}
    broker_row = next(line for line in table(report).splitlines() if "broker_cores" in line)
    assert broker_row.endswith("[0.5]  (median 0.50)")


def test_own_work_times_every_step_of_a_login() -> None:
    steps = time_steps(logins(50))
    assert set(steps) == {"total", "decode", "state", "offer", "encode"}
    assert all(us > 0 for us in steps.values())
    assert steps["total"] >= sum(us for step, us in steps.items() if step != "total")
