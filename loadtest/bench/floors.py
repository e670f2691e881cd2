"""The Faust floor taken apart: how much of a login's CPU each layer of the design costs.

On one set of logins already on a topic, in alternating rounds, this runs
the worker and the Faust floor in its three modes (``consume``: Faust's
stream alone; ``table``: plus a table row per event; ``full``: plus a
produced record, what ``positioning bench`` runs) and prints each one's
events per second, the median and the rounds::

    PYTHONPATH=$PWD python -m loadtest.bench.floors --rounds 3 --logins 20000

docs/performance.md ("What limits each figure") reads the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import uuid

from loadtest.bench.runner import Bench
from loadtest.produce import produce
from runtime.acls import ensure_principals
from runtime.settings import Settings
from runtime.topics import ensure_topics

PROGRAMS = ("worker", "full", "table", "consume")


def run(rounds: int, logins: int) -> dict[str, list[float | None]]:
    """Events (or logins) per second of each program per round, on one topic of ``logins``."""
    bench = Bench(Settings(), quick=True, say=lambda _: None)
    bench.start_broker()
    rates: dict[str, list[float | None]] = {name: [] for name in PROGRAMS}
    try:
        base = bench.settings("floors")
        asyncio.run(ensure_topics(base))
        asyncio.run(produce(base, logins, 0, progress=False))
        for i in range(rounds):
            for name in PROGRAMS if i % 2 == 0 else reversed(PROGRAMS):
                home = base.home / f"{name}-{i}"
                if name == "worker":
                    # A group and an offers topic of its own, on the same logins.
                    settings = base.replace(home=home, worker_id=f"floors-{uuid.uuid4().hex[:6]}",
                                            offers_topic=f"offers-{uuid.uuid4().hex[:6]}")
                    asyncio.run(ensure_topics(settings))
                    ensure_principals(settings)
                    rate = bench.worker_alone(settings, logins)["logins_per_s"]
                else:
                    rate = bench.faust_floor(base.replace(home=home), logins,
                                              mode=name)["events_per_s"]
                rates[name].append(rate)
                print(f"round {i + 1}/{rounds}: {name} {rate or 0:,.0f}/s", flush=True)
    finally:
        bench.stop_broker()
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--logins", type=int, default=20_000)
    args = parser.parse_args(argv)
    rates = run(args.rounds, args.logins)
    for name, values in rates.items():
        known = [v for v in values if v is not None]
        median = statistics.median(known) if known else None
        print(f"{name:<8} median {median or 0:>8,.0f}/s  "
              f"({1000 / median if median else float('nan'):.2f} ms each)  rounds "
              + json.dumps([round(v) if v else None for v in values]))


if __name__ == "__main__":
    main()
