"""The benchmark report: every summary key has a row, and a missed goal says so."""

from __future__ import annotations

from loadtest.bench.runner import _met, cpu_ms_per_login, judge, render_table


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
    assert _met(20.0, "<=", 25.0) and not _met(30.0, "<=", 25.0)
    assert _met(0.95, ">=", 0.9) and not _met(0.5, ">=", 0.9)
    assert _met(None, ">=", 0.9) is None


def test_the_table_has_a_row_per_figure_and_names_misses() -> None:
    table = render_table(_report())
    lines = {line.split("  ")[0].strip(): line for line in table.splitlines()[1:]}
    assert len(lines) == len(_report()["summary"])
    assert "MISSED" in lines["worker alone / Faust floor (median round)"]
    assert lines["broker CPU at 100 logins/s (cores)"].rstrip().endswith("met")
    assert lines["edge lookups / bare Starlette (median round)"].rstrip().endswith("met")
    assert "MISSED" in lines["CPU ms per login, whole stack, at 1,000/s"]
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
