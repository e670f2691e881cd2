"""What the dashboards under deploy/ ask of the stack: the series the Grafana dashboard's
PromQL selects, and the endpoints the Prometheus configuration scrapes.

PromQL is parsed with ``promql-parser`` (the Rust parser GreptimeDB uses, with
Python bindings), never with regular expressions; only Grafana's own
variables are substituted first, as Grafana does before it sends a query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "content-positioning.json"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"

# Grafana's interval variables, which stand where PromQL wants a duration.
_GRAFANA_DURATION = re.compile(r"\$(?:\{__(?:rate_interval|interval|range)\}|"
                               r"__(?:rate_interval|interval|range)\b)")
# Grafana's label_values(<metric>, <label>) template query: not PromQL, its metric is.
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)\s*$")


@dataclass(frozen=True)
class Selector:
    """One series selector of a query: the metric name and its label matchers."""

    name: str
    equal: tuple[tuple[str, str], ...]    # label="value" matchers
    labels: frozenset[str]                # every label a matcher names


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels(panel)


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: each panel target's ``expr`` and each query variable's query."""
    out = [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if t.get("expr")]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            out.append(query["query"] if isinstance(query, dict) else query)
    return out


def selectors(query: str) -> list[Selector]:
    """The series selectors of one query (Grafana's variables substituted first).

    Raises:
        ValueError: the query is not PromQL (the parser's message says where).
    """
    values = _LABEL_VALUES.match(query)
    text = values.group("selector") if values else _GRAFANA_DURATION.sub("5m", query)
    found: list[Selector] = []

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            name = node.name or next((m.value for m in matchers if m.name == "__name__"), None)
            if name is None:
                raise ValueError(f"a selector without a metric name in {query!r}")
            found.append(Selector(
                name,
                tuple((m.name, m.value) for m in matchers
                      if m.op == promql_parser.MatchOp.Equal and m.name != "__name__"),
                frozenset(m.name for m in matchers if m.name != "__name__")))
        return True

    promql_parser.walk(promql_parser.parse(text), visit)
    return found


def metric_names(query: str) -> set[str]:
    """The names of the series one query selects (``x_bucket``, not the histogram ``x``)."""
    return {s.name for s in selectors(query)}


def exposed(exposition: str) -> dict[str, list[dict[str, str]]]:
    """Series name -> the label sets of its samples on one ``/metrics`` page.

    Names are the samples' (a histogram family ``x`` exposes ``x_bucket``,
    ``x_count``, ``x_sum``; a counter ``y`` exposes ``y_total``), which are the
    series Prometheus stores; a family without samples (a labelled metric never
    used) exposes nothing.
    """
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    metrics_path: str
    targets: tuple[str, ...]


def scrape_jobs(path: Path = PROMETHEUS) -> list[ScrapeJob]:
    """The jobs of the Prometheus configuration, with their static targets."""
    config = yaml.safe_load(path.read_text())
    return [ScrapeJob(job["job_name"], job.get("metrics_path", "/metrics"),
                      tuple(t for sc in job.get("static_configs", []) for t in sc["targets"]))
            for job in config["scrape_configs"]]
