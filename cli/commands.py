"""Sub-commands that run the components: origin, worker, edge, produce (and the stack tools).

Each imports its component only when run, so one command never pays for
another's dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from runtime.http_protocol import HttpLimits
from runtime.settings import Settings


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(max_head_bytes=settings.http_max_head_bytes,
                      max_headers=settings.http_max_headers,
                      head_timeout_s=settings.http_head_timeout_s,
                      body_timeout_s=settings.http_body_timeout_s)


def _serve(app: object, host: str, port: int, limits: HttpLimits) -> int:
    import uvicorn

    from runtime.http_protocol import server_settings

    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on",
                            **server_settings(limits))
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def _origin(args: argparse.Namespace, settings: Settings) -> int:
    from origin.app import create_app

    port = args.port or settings.origin_port
    return _serve(create_app(settings), settings.origin_host, port, http_limits(settings))


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import mode.loop
    from faust import Worker

    from pipeline.worker import create_app
    from runtime.topics import TopicMismatch, ensure_topics

    started = time.monotonic()
    try:
        asyncio.run(ensure_topics(settings))
        # uvloop, as `faust -L uvloop` would: the worker's main thread is busy, and
        # asyncio's pure-Python loop costs ~10 % of its logins/s.
        mode.loop.use("uvloop")
        app = create_app(settings, on_wedged=lambda reason: _restart_after_crash(
            args, reason, time.monotonic() - started))
        worker = Worker(app, loglevel="info", redirect_stdouts=False)
        worker.execute_from_commandline()
        return 0
    except TopicMismatch as exc:  # a systematic fault: no restart
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        crash: BaseException = exc
    except Exception as exc:  # Faust re-raises what crashed it
        crash = exc
    _restart_after_crash(args, crash, time.monotonic() - started)
    return 1  # not reached: the process is replaced


def _restart_after_crash(args: argparse.Namespace, crash: BaseException, ran_s: float) -> None:
    """Replace this process with a fresh worker, loudly, after a growing pause.

    Faust stops the whole worker when its consumer fails (for instance when
    the broker disappears in the middle of a group coordination). Its
    offsets are committed only up to what it finished, so a fresh worker in
    the same process (same pid, same state directory) picks up exactly
    there. Crashes in a row back off 1, 2, 4 ... 30 s; a worker that ran a
    minute starts the count again.
    """
    crashes = 1 if ran_s > 60 else args.crashes + 1
    delay = min(30, 2 ** (crashes - 1))
    logging.getLogger("positioning.worker").critical(
        "the worker crashed (%r) after %.0f s; crash %d in a row, restarting in %d s",
        crash, ran_s, crashes, delay)
    sys.stderr.flush()
    sys.stdout.flush()
    time.sleep(delay)
    os.execv(sys.executable, [sys.executable, "-m", "cli.main", "worker",
                              "--crashes", str(crashes)])


def _edge(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from edge.app import create_app

    data_dir = Path(args.data_dir) if args.data_dir else settings.edge_data_dir(args.region)
    return _serve(create_app(settings, args.region, data_dir), settings.edge_host, args.port,
                  http_limits(settings))


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.produce import produce

    summary = asyncio.run(produce(settings, args.count, args.rate, users=args.users,
                                  seed=args.seed, progress=not args.quiet))
    print(summary.render())
    return 0 if summary.failed == 0 else 1


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.stack import Stack, StackError

    try:
        Stack(settings).up(timeout=args.timeout)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"stack up: origin http://{settings.origin_host}:{settings.origin_port}/ , edges "
          + ", ".join(f"{r} http://{settings.edge_host}:{p}" for r, p in settings.edge_ports.items()))
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.stack import Stack, StackError

    try:
        Stack(settings).down()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _story(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.story import Story, StoryConfig, render_table, write_report

    config = StoryConfig(users=args.users, gap_s=args.gap, origin_one_way_ms=args.origin_delay,
                         edge_one_way_ms=args.edge_delay, region=args.region,
                         concurrency=args.concurrency)
    report = asyncio.run(Story(settings, config).run(progress=not args.quiet))
    json_path, html_path = write_report(report, settings.home / "reports")
    print()
    print(render_table(report))
    print(f"\nreport: {json_path}\nchart:  {html_path}")
    return 0 if not report["errors"] else 1


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from loadtest.bench.runner import Bench, render_table, write

    report = Bench(settings, quick=args.quick).run()
    path = write(report, settings.home)
    print()
    print(render_table(report))
    print(f"\nresults: {path}")
    return 0


def _chaos(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from devstack.stack import StackError
    from loadtest.chaos import Chaos, ChaosConfig, passed, render_table, write_report

    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    config = ChaosConfig(kill=tuple(k.strip() for k in args.kill.split(",") if k.strip()),
                         runs=args.runs, logins=args.logins, rate=args.rate, users=args.users,
                         max_down_s=args.max_down, ttl_s=args.ttl,
                         model_latency_ms=args.model_latency_ms, seed=args.seed,
                         keep_stack=args.keep_stack)
    try:
        report = Chaos(settings, config).run(progress=not args.quiet)
    except (ValueError, StackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = write_report(report, settings.home / "chaos")
    print()
    print(render_table(report))
    print(f"\nreport: {path}")
    return 0 if passed(report) else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the component sub-commands to the ``positioning`` parser."""
    origin = sub.add_parser("origin", help="run the origin (login API, sync baseline, web client)")
    origin.add_argument("--port", type=int, default=None, help="default: POSITIONING_ORIGIN_PORT (8000)")
    origin.set_defaults(run=_origin)

    worker = sub.add_parser("worker", help="run the Faust offer worker in the foreground")
    worker.add_argument("--crashes", type=int, default=0, help=argparse.SUPPRESS)
    worker.set_defaults(run=_worker)

    edge = sub.add_parser("edge", help="run one edge node in the foreground")
    edge.add_argument("--region", required=True, help="a name for the node, e.g. eu")
    edge.add_argument("--port", type=int, required=True)
    edge.add_argument("--data-dir", default=None, help="default: <POSITIONING_HOME>/edge/<region>")
    edge.set_defaults(run=_edge)

    up = sub.add_parser("up", help="start the whole local stack (idempotent)")
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for each component")
    up.set_defaults(run=_up)

    down = sub.add_parser("down", help="stop the whole local stack")
    down.set_defaults(run=_down)

    story = sub.add_parser("story", help="the user story: time to offer, three ways")
    story.add_argument("--users", type=int, default=50)
    story.add_argument("--gap", type=float, default=1.0,
                       help="seconds the user spends between login and wanting the offer")
    story.add_argument("--origin-delay", type=float, default=60.0, help="one-way ms to the origin")
    story.add_argument("--edge-delay", type=float, default=5.0, help="one-way ms to the edge")
    story.add_argument("--region", default="eu", help="which edge the users are near")
    story.add_argument("--concurrency", type=int, default=10)
    story.add_argument("--quiet", action="store_true", help="no progress bar")
    story.set_defaults(run=_story)

    bench = sub.add_parser("bench", help="the benchmarks; JSON results in <home>/bench/")
    bench.add_argument("--quick", action="store_true", help="a run of a few minutes, smaller data")
    bench.set_defaults(run=_bench)

    chaos = sub.add_parser(
        "chaos", help="fault injection with counting: kill a component while logins flow, "
                      "then check every acked login on every edge")
    chaos.add_argument("--kill", required=True,
                       help="worker, edge, origin or broker (or several, comma-separated)")
    chaos.add_argument("--runs", type=int, default=20, help="runs per component")
    chaos.add_argument("--logins", type=int, default=500, help="logins per run")
    chaos.add_argument("--rate", type=float, default=100.0, help="logins per second")
    chaos.add_argument("--users", type=int, default=50, help="distinct users per run")
    chaos.add_argument("--max-down", type=float, default=12.0,
                       help="a killed component stays down a random 0..this many seconds")
    chaos.add_argument("--ttl", type=int, default=60,
                       help="ticket TTL of the chaos stack (the tombstone check waits for it)")
    chaos.add_argument("--model-latency-ms", type=float, default=100.0)
    chaos.add_argument("--seed", type=int, default=None)
    chaos.add_argument("--keep-stack", action="store_true", help="leave the chaos stack up")
    chaos.add_argument("--quiet", action="store_true", help="no progress bar")
    chaos.set_defaults(run=_chaos)

    produce = sub.add_parser("produce", help="produce synthetic logins onto the logins topic")
    produce.add_argument("--count", type=int, default=1000)
    produce.add_argument("--rate", type=float, default=0.0, help="logins per second; 0 = flat out")
    produce.add_argument("--users", type=int, default=None, help="distinct users (default count/3)")
    produce.add_argument("--seed", type=int, default=1)
    produce.add_argument("--quiet", action="store_true", help="no progress bar")
    produce.set_defaults(run=_produce)
