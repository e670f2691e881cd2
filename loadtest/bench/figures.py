"""The figures `positioning bench` reports, each declared once.

A :class:`Figure` is to the bench's summary what a field is to
``runtime.settings.Settings``: its JSON key (a public contract, kept
stable), its label and unit for the table, where its value is read from
the parts' results, and its goal if it has one. The summary, the goals and
the table are all derived from :data:`FIGURES`, in that order.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# The load generator's own CPU is not the stack's.
LOAD_GENERATOR = "load generator"


@dataclass(frozen=True)
class Parts:
    """What each part of the bench returned (loadtest/bench/runner.py's ``bench_*``)."""

    edge: Mapping[str, Any]
    origin: Mapping[str, Any]
    worker: Mapping[str, Any]
    pipeline: Mapping[str, Any]
    cluster: Mapping[str, Any]
    local_broker: bool  # a broker this run started: its CPU is the pipeline's alone

    def at(self, rate: int) -> Mapping[str, Any] | None:
        """The pipeline part's results at ``rate`` logins/s, None if that rate was not run."""
        result: Mapping[str, Any] | None = self.pipeline["positioning"].get(str(rate))
        return result


@dataclass(frozen=True)
class Goal:
    """A bound a figure should keep: ``value <= bound`` or ``value >= bound``."""

    op: Literal["<=", ">="]
    bound: float

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` keeps the bound; None when there is no value."""
        if value is None:
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass(frozen=True)
class Figure:
    """One reported figure.

    ``of`` reads the value from the parts (None when the run did not
    measure it). ``failed_requests`` names the figure that counts the
    requests which failed while this one was measured: a throughput
    measured with failures does not measure its path, so it is flagged
    invalid instead of judged.
    """

    key: str
    label: str
    unit: str
    of: Callable[[Parts], float | int | None]
    goal: Goal | None = None
    failed_requests: str | None = None

    @property
    def title(self) -> str:
        """The table's row name: the label, with its unit in brackets."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


def median_known(values: Iterable[float | None]) -> float | None:
    """The median of the values that are not None; None if there are none."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` to 2 places, None when either is missing or the
    denominator is 0."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def cpu_ms_per_login(shares: Mapping[str, float | None], rate: float) -> float:
    """CPU milliseconds the stack (every process but the load generator) spent per login,
    from each process's share of one core at ``rate`` logins/s."""
    return 1000 * sum(share or 0.0 for name, share in shares.items()
                      if name != LOAD_GENERATOR) / rate


def _latency(rate: int, key: str) -> Callable[[Parts], float | None]:
    def of(parts: Parts) -> float | None:
        at = parts.at(rate)
        return None if at is None else at["all"].get(key)
    return of


def _broker_cores_at_100(parts: Parts) -> float | None:
    at = parts.at(100)
    return at["cpu_share_of_one_core"].get("broker") if parts.local_broker and at else None


def _stack_cpu_at_1000(parts: Parts) -> float | None:
    at = parts.at(1000)
    return (cpu_ms_per_login(at["cpu_share_of_one_core"], 1000)
            if parts.local_broker and at else None)


def _cluster(key: str) -> Callable[[Parts], float | None]:
    return lambda parts: parts.cluster[key]


def _edge(key: str) -> Callable[[Parts], float | None]:
    return lambda parts: parts.edge[key]


def _lookup(key: str) -> Callable[[Parts], float | None]:
    return lambda parts: parts.edge["lookup"][key]


def _origin(key: str) -> Callable[[Parts], float | None]:
    return lambda parts: parts.origin[key]


_EDGE_FAILED = "edge_lookup_failed_requests"
_ORIGIN_FAILED = "origin_login_failed_requests"

FIGURES: tuple[Figure, ...] = (
    Figure("worker_ratio_to_floor", "worker alone / Faust floor (median round)", "",
           lambda p: p.worker["ratio_to_floor"], Goal(">=", 1.0)),
    Figure("broker_cpu_core_at_100", "broker CPU at 100 logins/s", "cores",
           _broker_cores_at_100, Goal("<=", 0.10)),
    Figure("positioning_p50_ms_at_100", "positioning latency p50 at 100 logins/s", "ms",
           _latency(100, "p50_ms"), Goal("<=", 12.0)),
    Figure("positioning_p99_ms_at_100", "positioning latency p99 at 100 logins/s", "ms",
           _latency(100, "p99_ms"), Goal("<=", 15.0)),
    Figure("positioning_p99_ms_at_500", "positioning latency p99 at 500 logins/s", "ms",
           _latency(500, "p99_ms")),
    Figure("positioning_p99_ms", "positioning latency p99 at 1,000 logins/s", "ms",
           _latency(1000, "p99_ms"), Goal("<=", 50.0)),
    Figure("stack_cpu_ms_per_login", "whole stack's CPU per login at 1,000/s", "CPU ms",
           _stack_cpu_at_1000, Goal("<=", 1.0)),
    Figure("edge_lookup_rps", "edge lookups/s, 1 process", "",
           _lookup("requests_per_s"), failed_requests=_EDGE_FAILED),
    Figure("edge_lookup_ratio", "edge lookups / bare Starlette (median round)", "",
           _lookup("ratio"), Goal(">=", 0.7), failed_requests=_EDGE_FAILED),
    Figure("edge_lookup_ratio_low", "edge lookups / bare, lowest round", "",
           _lookup("ratio_low"), failed_requests=_EDGE_FAILED),
    Figure("edge_lookup_ratio_high", "edge lookups / bare, highest round", "",
           _lookup("ratio_high"), failed_requests=_EDGE_FAILED),
    Figure("edge_lookup_p99_ms", "edge lookup p99", "ms", _lookup("p99_ms")),
    Figure(_EDGE_FAILED, "edge lookups failed (non-2xx, socket errors)", "",
           _lookup("failed_requests")),
    Figure("origin_login_rps", "origin logins/s, 1 process", "",
           _origin("requests_per_s"), failed_requests=_ORIGIN_FAILED),
    Figure("origin_login_ratio", "origin logins / bare Starlette (median round)", "",
           _origin("ratio"), failed_requests=_ORIGIN_FAILED),
    Figure("origin_login_ratio_low", "origin logins / bare, lowest round", "",
           _origin("ratio_low"), failed_requests=_ORIGIN_FAILED),
    Figure("origin_login_ratio_high", "origin logins / bare, highest round", "",
           _origin("ratio_high"), failed_requests=_ORIGIN_FAILED),
    Figure(_ORIGIN_FAILED, "origin logins failed (non-2xx, socket errors)", "",
           _origin("failed_requests")),
    Figure("pipeline_offers_per_s", "pipeline offers/s reaching an edge", "",
           lambda p: p.pipeline["throughput"]["offers_per_s"]),
    Figure("worker_logins_per_s", "worker logins/s, worker alone", "",
           lambda p: p.worker["logins_per_s"]),
    Figure("worker_faust_floor_per_s", "Faust floor events/s (table row + record)", "",
           lambda p: p.worker["faust_floor"]["events_per_s"]),
    Figure("bootstrap_offers_per_s", "edge bootstrap offers/s", "",
           _edge("bootstrap_offers_per_s"), Goal(">=", 100_000.0)),
    Figure("bootstrap_verified_ratio", "edge bootstrap verifying / trusting signatures", "",
           lambda p: (p.edge["verification"] or {}).get("ratio"), Goal(">=", 0.8)),
    Figure("restart_ready_s", "edge restart to ready", "s",
           _edge("restart_ready_s"), Goal("<=", 0.5)),
    Figure("positioning_p50_ms_at_100_1_node", "positioning p50 at 100/s, 1 node", "ms",
           _cluster("p50_ms_1_node")),
    Figure("positioning_p50_ms_at_100_3_nodes", "positioning p50 at 100/s, 3 nodes", "ms",
           _cluster("p50_ms_3_nodes")),
    Figure("positioning_p99_ms_at_100_1_node", "positioning p99 at 100/s, 1 node", "ms",
           _cluster("p99_ms_1_node")),
    # Replicated latency: 3 nodes (RF 3, acks=all) within 2x of one node.
    Figure("positioning_p99_ms_at_100_3_nodes", "positioning p99 at 100/s, 3 nodes", "ms",
           _cluster("p99_ms_3_nodes"), Goal("<=", 50.0)),
    Figure("positioning_p50_ratio_3_to_1_node_at_100", "positioning p50 at 100/s, 3 nodes / 1",
           "", lambda p: ratio(p.cluster["p50_ms_3_nodes"], p.cluster["p50_ms_1_node"]),
           Goal("<=", 2.0)),
    # The quiet path: about one login a second.
    Figure("positioning_p50_ms_at_1_1_node", "positioning p50 at 1/s, 1 node", "ms",
           _cluster("quiet_p50_ms_1_node"), Goal("<=", 10.0)),
    Figure("positioning_p50_ms_at_1_3_nodes", "positioning p50 at 1/s, 3 nodes", "ms",
           _cluster("quiet_p50_ms_3_nodes"), Goal("<=", 20.0)),
    Figure("positioning_p99_ms_at_1_1_node", "positioning p99 at 1/s, 1 node", "ms",
           _cluster("quiet_p99_ms_1_node"), Goal("<=", 25.0)),
    Figure("positioning_p99_ms_at_1_3_nodes", "positioning p99 at 1/s, 3 nodes", "ms",
           _cluster("quiet_p99_ms_3_nodes"), Goal("<=", 50.0)),
)

BY_KEY: dict[str, Figure] = {figure.key: figure for figure in FIGURES}


def summarize(parts: Parts) -> dict[str, float | int | None]:
    """Every figure's value, by JSON key, in :data:`FIGURES` order."""
    return {figure.key: figure.of(parts) for figure in FIGURES}


def invalid(figure: Figure, summary: Mapping[str, Any]) -> str | None:
    """Why ``figure``'s value is not to be trusted in ``summary``, or None."""
    failed = summary.get(figure.failed_requests) if figure.failed_requests else None
    return f"{failed} requests failed" if failed else None


def judge(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal by key: ``{"goal": "<= 50", "met": True | False | None}``; ``met`` is None
    when the figure is missing, and also when its requests failed (with ``invalid``).

    Raises:
        KeyError: ``summary`` lacks a figure that has a goal.
    """
    goals: dict[str, dict[str, Any]] = {}
    for figure in FIGURES:
        if figure.goal is None:
            continue
        verdict: dict[str, Any] = {"goal": str(figure.goal),
                                   "met": figure.goal.met(summary[figure.key])}
        reason = invalid(figure, summary)
        if reason:
            verdict.update(met=None, invalid=reason)
        goals[figure.key] = verdict
    return goals


def render_table(report: Mapping[str, Any]) -> str:
    """The report's summary as a text table: one row per figure, its goal and verdict."""
    summary, goals = report["summary"], report["goals"]
    lines = [f"{'figure':<50}{'value':>12}  goal"]
    for figure in FIGURES:
        value = summary.get(figure.key)
        goal = goals.get(figure.key)
        reason = invalid(figure, summary)
        verdict = (f"INVALID: {reason}" if reason else "" if goal is None
                   else "-" if goal["met"] is None else "met" if goal["met"] else "MISSED")
        mark = f"{goal['goal'] if goal else '':<10} {verdict}".rstrip()
        shown = f"{value:>12,.2f}" if value is not None else f"{'-':>12}"
        lines.append(f"{figure.title:<50}{shown}  {mark}".rstrip())
    return "\n".join(lines)
