"""The benchmark report: every summary key has a row, and a missed goal says so."""

from __future__ import annotations

import pytest

from loadtest.bench.figures import (
    FIGURES,
    Goal,
    Parts,
    cpu_ms_per_login,
    judge,
    render_table,
    summarize,
)


def _report(**overrides: float | None) -> dict:
    summary = {"worker_ratio_to_floor": 0.49, "broker_cpu_core_at_100": 0.08,
               "positioning_p50_ms_at_100": 6.0,
               "positioning_p99_ms": 20.0, "positioning_p99_ms_at_100": 9.0,
               "positioning_p99_ms_at_500": None, "stack_cpu_ms_per_login": 1.75,
               "edge_lookup_rps": 10_000.0, "edge_lookup_ratio": 0.95,
               "edge_lookup_ratio_low": 0.91, "edge_lookup_ratio_high": 0.97,
               "edge_lookup_p99_ms": 5.0, "edge_lookup_failed_requests": 0,
               "origin_login_rps": 8_000.0, "origin_login_ratio": 0.4,
               "origin_login_ratio_low": 0.35, "origin_login_ratio_high": 0.45,
               "origin_login_failed_requests": 0,
               "pipeline_offers_per_s": 6_000.0, "worker_logins_per_s": None,
               "worker_faust_floor_per_s": 2_500.0,
               "bootstrap_offers_per_s": 120_000.0, "bootstrap_verified_ratio": 0.9,
               "restart_ready_s": 0.3,
               "positioning_p50_ms_at_100_1_node": 8.0, "positioning_p50_ms_at_100_3_nodes": 9.5,
               "positioning_p99_ms_at_100_1_node": 14.0,
               "positioning_p99_ms_at_100_3_nodes": 17.0,
               "positioning_p50_ratio_3_to_1_node_at_100": 1.19,
               "positioning_p50_ms_at_1_1_node": 7.0, "positioning_p50_ms_at_1_3_nodes": 25.0,
               "positioning_p99_ms_at_1_1_node": 12.0, "positioning_p99_ms_at_1_3_nodes": 30.0,
               **overrides}
    return {"summary": summary, "goals": judge(summary)}


def test_goals_are_judged_in_the_right_direction() -> None:
    assert Goal("<=", 25.0).met(20.0) and not Goal("<=", 25.0).met(30.0)
    assert Goal(">=", 0.9).met(0.95) and not Goal(">=", 0.9).met(0.5)
    assert Goal(">=", 0.9).met(None) is None
    assert str(Goal(">=", 100_000.0)) == ">= 100000"


def test_each_figure_is_declared_once_and_the_summary_keeps_the_public_keys() -> None:
    keys = [figure.key for figure in FIGURES]
    assert len(keys) == len(set(keys))
    assert len({figure.title for figure in FIGURES}) == len(FIGURES)
    assert set(keys) == set(_report()["summary"])
    for figure in FIGURES:
        if figure.failed_requests is not None:
            assert figure.failed_requests in keys


def _parts(local_broker: bool = True, rates: tuple[int, ...] = (100, 1000)) -> Parts:
    def at(rate: int) -> dict:
        return {"all": {"p50_ms": rate / 100, "p99_ms": rate / 10},
                "cpu_share_of_one_core": {"broker": 0.05, "worker": 0.4,
                                          "load generator": 0.2}}
    lookup = {"requests_per_s": 9_000.0, "ratio": 0.9, "ratio_low": 0.8, "ratio_high": 0.95,
              "p99_ms": 4.0, "failed_requests": 0}
    cluster = {f"{q}{k}_{n}": v for q, base in (("", 8.0), ("quiet_", 5.0))
               for k, m in (("p50_ms", 1), ("p99_ms", 3))
               for n, v in (("1_node", base * m), ("3_nodes", 2 * base * m))}
    return Parts(
        edge={"bootstrap_offers_per_s": 150_000.0, "restart_ready_s": 0.2,
              "verification": {"ratio": 0.85}, "lookup": lookup},
        origin={**lookup, "requests_per_s": 7_000.0},
        worker={"ratio_to_floor": 0.5, "logins_per_s": 1_400.0,
                "faust_floor": {"events_per_s": 2_800.0}},
        pipeline={"throughput": {"offers_per_s": 5_000.0},
                  "positioning": {str(rate): at(rate) for rate in rates}},
        cluster=cluster, local_broker=local_broker)


def test_the_summary_reads_each_figure_from_its_part() -> None:
    summary = summarize(_parts())
    assert [*summary] == [figure.key for figure in FIGURES]
    assert summary["positioning_p99_ms"] == 100.0 and summary["positioning_p50_ms_at_100"] == 1.0
    assert summary["positioning_p99_ms_at_500"] is None  # a rate --quick does not run
    assert summary["broker_cpu_core_at_100"] == 0.05
    assert summary["stack_cpu_ms_per_login"] == pytest.approx(0.45)
    assert summary["positioning_p50_ratio_3_to_1_node_at_100"] == 2.0
    assert summary["positioning_p99_ms_at_1_3_nodes"] == 30.0
    assert summary["bootstrap_verified_ratio"] == 0.85
    assert summary["origin_login_rps"] == 7_000.0 and summary["edge_lookup_rps"] == 9_000.0


def test_a_broker_this_run_did_not_start_gives_no_cpu_figures() -> None:
    summary = summarize(_parts(local_broker=False))
    assert summary["broker_cpu_core_at_100"] is None
    assert summary["stack_cpu_ms_per_login"] is None
    assert judge(summary)["stack_cpu_ms_per_login"]["met"] is None


def test_the_table_has_a_row_per_figure_and_names_misses() -> None:
    table = render_table(_report())
    lines = {line.split("  ")[0].strip(): line for line in table.splitlines()[1:]}
    assert len(lines) == len(_report()["summary"])
    assert "MISSED" in lines["worker alone / Faust floor (median round)"]
    assert lines["broker CPU at 100 logins/s (cores)"].rstrip().endswith("met")
    assert lines["edge lookups / bare Starlette (median round)"].rstrip().endswith("met")
    assert "MISSED" in lines["whole stack's CPU per login at 1,000/s (CPU ms)"]
    assert "-" in lines["worker logins/s, worker alone"]
    assert lines["positioning p50 at 100/s, 3 nodes / 1"].rstrip().endswith("met")
    assert "MISSED" in lines["positioning p50 at 1/s, 3 nodes (ms)"]


def test_a_comparison_with_failed_requests_is_flagged_not_judged() -> None:
    report = _report(edge_lookup_failed_requests=1_200)
    goal = report["goals"]["edge_lookup_ratio"]
    assert goal["met"] is None and goal["invalid"] == "1200 requests failed"
    assert report["goals"]["worker_ratio_to_floor"]["met"] is False  # not a request figure
    table = render_table(report)
    assert "INVALID: 1200 requests failed" in next(
        line for line in table.splitlines() if line.startswith("edge lookups / bare Starlette"))
    # A throughput without a goal is flagged too.
    assert "INVALID: 1200 requests failed" in next(
        line for line in table.splitlines() if line.startswith("edge lookups/s"))


def test_cpu_per_login_counts_every_process_but_the_load_generator() -> None:
    shares = {"worker": 0.6, "origin": 0.4, "broker": 0.3, "edge-eu": None,
              "load generator": 0.15}
    assert abs(cpu_ms_per_login(shares, 1000) - 1.3) < 1e-9


async def test_a_lookup_on_a_dropped_connection_is_made_again() -> None:
    import httpx

    from loadtest.bench.runner import _get_retrying

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params["wait"])
        if len(calls) == 1:
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        response = await _get_retrying(http, "http://edge/offers/t", params={"wait": 20})
    assert response.status_code == 200 and calls == ["20", "20"]


async def test_a_lookup_that_keeps_failing_raises() -> None:
    import httpx
    import pytest

    from loadtest.bench.runner import _get_retrying

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(httpx.ReadError):
            await _get_retrying(http, "http://edge/offers/t", params={"wait": 20})


def test_docs_explain_every_figure() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "performance.md").read_text()
    missing = [f.key for f in FIGURES if f"`{f.key}`" not in text
               and f"`{f.key.rsplit('_', 1)[0]}` (`_low`, `_high`)" not in text]
    assert not missing, f"docs/performance.md does not explain {missing}"
