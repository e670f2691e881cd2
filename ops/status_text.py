"""The status report (ops/status.py) as text for a person: one line per part, problems last."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _component_line(c: dict[str, Any]) -> str:
    if not c["up"]:
        state = "DOWN"
    elif not c["ready"]:
        state = "NOT READY"
    else:
        state = "ready"
    who = f"pid {c['pid']}" if c["managed"] else "not managed"
    detail = c["reason"] if not c["up"] else f"{who}; {c['reason']}" if c["reason"] else who
    line = f"  {c['name']:<14}{state:<11}{detail}"
    figures = c.get("figures")
    if figures is not None:
        stored = figures["offers_stored"]
        line += (f"\n  {'':<14}{'':<11}{'?' if stored is None else stored} offers, lag "
                 f"{figures['total_lag']}, positioning p50 {_ms(figures['positioning_p50_s'])} "
                 f"p99 {_ms(figures['positioning_p99_s'])} ({figures['positioned']} offers)")
    elif c.get("figures_error"):
        line += f"\n  {'':<14}{'':<11}metrics unreadable: {c['figures_error']}"
    return line


def _components(data: Any) -> list[str]:
    return ["components", *(_component_line(c) for c in data)]


def _kafka(data: dict[str, Any]) -> list[str]:
    where = "external" if data["external"] else "local"
    lines = [f"kafka ({where}, {data['bootstrap_servers']})"]
    for n in data["nodes"]:
        role = ", quorum leader" if n["node_id"] == data["leader"] else ""
        state = "up" if n["up"] else "DOWN"
        pid = f"pid {n['pid']}, " if n["pid"] is not None else ""
        lines.append(f"  {'node ' + str(n['node_id']):<14}{state:<11}{pid}{n['address']}{role}")
    return lines


def _worker_group(data: dict[str, Any]) -> list[str]:
    parts = ", ".join(f"p{p['partition']} {p['lag']}" for p in data["partitions"])
    return [f"worker group {data['group']} on {data['topic']}: lag {data['total_lag']}"
            + (f" ({parts})" if parts else "")]


def _dead_letters(data: dict[str, Any]) -> list[str]:
    if data["by_error_type"] is None:
        return [f"dead letters: {data['total']} (too many to count by type here: "
                "`positioning dlq list`)"]
    by_type = sorted(data["by_error_type"].items(), key=lambda kv: (-kv[1], kv[0]))
    return [f"dead letters: {data['total']}"
            + (f" ({', '.join(f'{t} {n}' for t, n in by_type)})" if by_type else "")]


def _plain(key: str, data: Any) -> list[str]:
    """A section without a layout of its own: its key, then ``name: value`` lines."""
    if isinstance(data, dict):
        return [key.replace("_", " "), *(f"  {k:<24}{v}" for k, v in data.items())]
    return [f"{key.replace('_', ' ')}: {data}"]


LAYOUTS: dict[str, Callable[[Any], list[str]]] = {
    "components": _components,
    "kafka": _kafka,
    "worker_group": _worker_group,
    "dead_letters": _dead_letters,
}

_HEAD = ("healthy", "problems", "took_s")


def render(report: dict[str, Any]) -> str:
    """The report as text: a verdict line, each section, then the problems one per line."""
    verdict = "healthy" if report["healthy"] else f"UNHEALTHY ({len(report['problems'])} problem" \
        f"{'' if len(report['problems']) == 1 else 's'})"
    lines = [f"status: {verdict}, gathered in {report['took_s']:.1f} s"]
    for key, data in report.items():
        if key in _HEAD:
            continue
        lines.append("")
        if isinstance(data, dict) and set(data) == {"error"}:
            lines.append(f"{key.replace('_', ' ')}: could not be read: {data['error']}")
            continue
        layout = LAYOUTS.get(key)
        lines.extend(layout(data) if layout is not None else _plain(key, data))
    if report["problems"]:
        lines += ["", "problems", *(f"  {p}" for p in report["problems"])]
    return "\n".join(lines)
