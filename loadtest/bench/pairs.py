"""Alternating A/B rounds of the bench's pipeline part: does one change of settings pay?

A change's effect on CPU per login is smaller than the drift of a shared
2-core machine between two full bench runs. So this runs the pipeline part
of ``positioning bench --quick`` (the whole stack on a fresh broker: full
rate, then fixed login rates) with settings A, then B, then B, then A, ...
and reports each figure per round and B ÷ A per pair, measured minutes
apart rather than runs apart::

    PYTHONPATH=$PWD python -m loadtest.bench.pairs --rounds 3 \\
        --a origin_linger_ms=1 --b origin_linger_ms=5

The secured Kafka plane against plaintext, with a fresh edge's catch-up
(what TLS and SCRAM cost)::

    PYTHONPATH=$PWD python -m loadtest.bench.pairs --rounds 2 --edge-offers 100000 \\
        --a kafka_security=plaintext --b kafka_security=sasl_ssl

Each side is a comma-separated list of ``field=value`` (the fields of
``runtime.settings.Settings``; the broker's own settings go through
``kafka_server_properties``, with ``;`` between its lines). The JSON lands in
``<home>/bench/pairs-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from loadtest.bench.figures import cpu_ms_per_login
from loadtest.bench.runner import Bench
from runtime.settings import Settings

FIGURES = ("broker_cores", "stack_cores", "stack_cpu_ms_per_login", "p50_ms", "p99_ms")


def parse_side(text: str) -> dict[str, str]:
    """``"a=1,b=x;y"`` -> ``{"a": "1", "b": "x,y"}`` (``;`` stands for a comma in a value).

    Raises:
        ValueError: a part is not ``field=value`` or names no setting.
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in Settings.model_fields:
            raise ValueError(f"{part!r} is not `field=value` for a field of Settings")
        out[name.strip()] = value.strip().replace(";", ",")
    return out


def figures(pipeline: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per login rate: broker and whole-stack cores, CPU ms per login, positioning p50/p99."""
    out = {}
    for rate, at in pipeline["positioning"].items():
        shares = at["cpu_share_of_one_core"]
        stack = sum(v for k, v in shares.items() if k != "load generator" and v is not None)
        out[rate] = {"broker_cores": shares.get("broker"), "stack_cores": round(stack, 3),
                     "stack_cpu_ms_per_login": round(cpu_ms_per_login(shares, int(rate)), 3),
                     "p50_ms": at["all"].get("p50_ms"), "p99_ms": at["all"].get("p99_ms")}
    return out


def run(base: Settings, sides: dict[str, dict[str, str]], rounds: int,
        edge_offers: int = 0) -> dict[str, Any]:
    """``rounds`` pairs, A first in even pairs and B first in odd ones; every round's figures,
    and with ``edge_offers`` the offers per second a fresh edge applies catching up on that
    many (on the same broker, before the pipeline part)."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for i in range(rounds):
        order = ["A", "B"] if i % 2 == 0 else ["B", "A"]
        for name in order:
            print(f"pair {i + 1}/{rounds}: {name} ({sides[name] or 'the defaults'})", flush=True)
            bench = Bench(base.replace(**sides[name]), quick=True, say=lambda _: None)
            bench.start_broker()
            try:
                bootstrap = None
                if edge_offers:
                    _, stack, edge, _, boot = bench.edge_bootstrap(edge_offers, f"edge-{i}")
                    stack.stop_component(edge)
                    bootstrap = round(boot["applied"] / boot["seconds"]) if boot["seconds"] else None
                pipeline = bench.bench_pipeline()
            finally:
                bench.stop_broker()
            results[name].append({"figures": figures(pipeline),
                                  "offers_per_s": pipeline["throughput"]["offers_per_s"],
                                  "edge_bootstrap_offers_per_s": bootstrap})
    return {"sides": sides, "rounds": results}


def table(report: dict[str, Any]) -> str:
    """Per rate and figure: A's rounds, B's rounds and the B ÷ A ratio of each pair."""
    a_rounds, b_rounds = report["rounds"]["A"], report["rounds"]["B"]
    lines = [f"A: {report['sides']['A'] or 'defaults'}   B: {report['sides']['B'] or 'defaults'}",
             f"{'rate':>5} {'figure':<24} {'A rounds':<28} {'B rounds':<28} B/A per pair"]
    for rate in a_rounds[0]["figures"]:
        for fig in FIGURES:
            a = [r["figures"][rate][fig] for r in a_rounds]
            b = [r["figures"][rate][fig] for r in b_rounds]
            ratios = [round(y / x, 2) if x and y is not None else None
                      for x, y in zip(a, b, strict=True)]
            known = [r for r in ratios if r is not None]
            median = f"  (median {statistics.median(known):.2f})" if known else ""
            lines.append(f"{rate:>5} {fig:<24} {str(a):<28} {str(b):<28} {ratios}{median}")
    a = [r.get("edge_bootstrap_offers_per_s") for r in a_rounds]
    b = [r.get("edge_bootstrap_offers_per_s") for r in b_rounds]
    if any(a):
        ratios = [round(y / x, 2) if x and y else None for x, y in zip(a, b, strict=True)]
        lines.append(f"{'-':>5} {'edge_bootstrap_offers_per_s':<24} {str(a):<28} {str(b):<28} "
                     f"{ratios}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="", help="settings of side A (default: the defaults)")
    parser.add_argument("--b", required=True, help="settings of side B")
    parser.add_argument("--rounds", type=int, default=3, help="pairs to run")
    parser.add_argument("--edge-offers", type=int, default=0,
                        help="also time a fresh edge catching up on this many offers")
    args = parser.parse_args(argv)
    base = Settings()
    report = run(base, {"A": parse_side(args.a), "B": parse_side(args.b)}, args.rounds,
                 args.edge_offers)
    out = base.home / "bench" / f"pairs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
