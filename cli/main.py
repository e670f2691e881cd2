"""The ``positioning`` command: one entry point for every component and tool.

One module on purpose: every command is a thin adapter (options in, one call
into its component, a result turned into an exit code), and they all share
the same conventions (settings from the environment, ``error: ...`` on
stderr, the exit codes below). Seen together, the whole command surface
reads like README.md's command table, in the same order.

Each command imports its component only when it runs, so ``positioning kafka
status`` does not pay for loading Faust.

Exit codes: 0 success; 1 the command failed (broker, topic or stack
errors, failed logins, a chaos check that did not pass; the message says
why); 2 a usage error (bad option or argument), invalid settings in the
environment, or a chaos configuration that cannot run. Expected failures
print one ``error:`` line (and the end of a log where it helps), never a
traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from runtime.http_protocol import HttpLimits
from runtime.kafka_security import KafkaAccessError
from runtime.offer_keys import OfferKeyError
from runtime.settings import Settings, env_var

if TYPE_CHECKING:
    from devstack.broker.cluster import LocalCluster

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + 2  # SIGINT


class _Failed(click.ClickException):
    """An expected failure: ``error: <message>`` on stderr and the given exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Commands(click.Group):
    """The command group: its help lists the commands in the order they are declared,
    and an expected failure (``_expected_failures``) escaping any of them becomes its
    ``error:`` line and exit code, in one place (as Starlette's exception handlers)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            code = _exit_code_of(exc)
            if code is None:
                raise
            raise _Failed(str(exc), code) from None


def _settings() -> Settings:
    """The settings from the environment.

    Raises:
        _Failed: (exit 2) a setting is invalid; the message names it.
    """
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise _Failed(str(exc), EXIT_USAGE) from None


def _kafka_unreachable(settings: Settings, exc: Exception) -> _Failed:
    """The failure of a command whose broker did not answer (aiokafka's message names the error)."""
    return _Failed(f"Kafka at {settings.bootstrap_servers} did not answer: {exc}")


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]},
             help="Eager, event-driven personal offers pushed to edge nodes.")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
# The version is declared once, in pyproject.toml; the installed package's metadata has it.
@click.version_option(package_name="content-positioning", prog_name="positioning",
                      message="%(prog)s %(version)s")
def positioning(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request drowns what matters (`up`, `story` poll a lot).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # One line per connection ("Authenticated as ... via SCRAM") says nothing an operator needs.
    logging.getLogger("aiokafka.conn").setLevel(logging.WARNING)


@positioning.result_callback()
def _exit_with(code: int | None, **_: object) -> None:
    """Every command returns its exit code; this turns it into the process's."""
    click.get_current_context().exit(code or 0)


# -- the broker and the topics ------------------------------------------------

@positioning.group(cls=_Commands, help="the local KRaft broker, or a cluster of several nodes")
def kafka() -> None:
    pass


_NODES = click.option("--nodes", type=click.IntRange(min=1), default=None,
                      help="nodes of the local cluster; default: POSITIONING_KAFKA_NODES (1)")


def _local_cluster(nodes: int | None) -> LocalCluster:
    """The local cluster of the settings, with ``nodes`` nodes if given."""
    from devstack.broker.cluster import LocalCluster

    return LocalCluster(_settings(), nodes)


@kafka.command(help="provision and start the node(s); returns once the cluster reports every "
                    "broker and a quorum leader; a no-op if all already run")
@_NODES
def start(nodes: int | None) -> int:

    status, started = _local_cluster(nodes).start()
    click.echo(status.describe() + ("" if started else "\n(already running; nothing to do)"))
    return 0


@kafka.command(help="SIGTERM every node of the home at once, wait up to 30 s, then SIGKILL")
@_NODES
def stop(nodes: int | None) -> int:

    stopped = _local_cluster(nodes).stop()
    click.echo("kafka stopped" if stopped else "kafka was not running")
    return 0


@kafka.command(help="each node running or stopped, with pid and address, and the quorum "
                    "leader; exit 1 when any node is stopped")
@_NODES
def status(nodes: int | None) -> int:
    from devstack.broker.layout import formatted_nodes

    # The home's own cluster, however many nodes the environment names now.
    current = _local_cluster(nodes or formatted_nodes(_settings())).status()
    click.echo(current.describe())
    return 0 if current.all_running else EXIT_FAILED


@kafka.command(help="only resolve the jars (from Maven Central or KAFKA_HOME)")
def fetch() -> int:
    from devstack.broker import jars

    classpath = jars.classpath(_settings().kafka_home)
    click.echo(f"kafka {jars.kafka_version()}: {len(classpath.split(':'))} jars ready")
    return 0


@positioning.command(help="create or check the topics and the worker's state changelog "
                          "(idempotent); refuses a wrong one, with the fix")
def topics() -> int:
    from aiokafka.errors import KafkaError
    from confluent_kafka import KafkaException

    from runtime.acls import ensure_principals
    from runtime.topics import ensure_topics

    settings = _settings()
    try:
        report = asyncio.run(ensure_topics(settings))
        created = ensure_principals(settings)
    except (KafkaError, KafkaException) as exc:
        raise _kafka_unreachable(settings, exc) from None
    width = max(len(r.name) for r in report.topics)
    for r in report.topics:
        click.echo(f"{r.name:<{width}}  {r.partitions} partitions  RF {r.replication_factor}  "
                   f"min ISR {r.min_insync_replicas}  {'created' if r.created else 'ok'}")
    if not settings.secured:
        click.echo(f"acls: none ({env_var('kafka_security')}=plaintext: anyone who reaches a "
                   "broker may do anything)")
        return 0
    for pair in settings.kafka_principals:
        role, _, user = pair.partition("=")
        click.echo(f"acls  User:{user} ({role}): {created.get(user, 0)} created, "
                   "no more than the role")
    return 0


@positioning.command("migrate-state",
                     help="copy the worker's per-user state from an old topic generation to "
                          "the one the settings name (docs/operations.md: changing the "
                          "number of partitions)")
@click.option("--from-logins-topic", required=True, help="the old generation's logins topic")
@click.option("--from-worker-id", required=True, help="the old generation's worker id")
def migrate_state(from_logins_topic: str, from_worker_id: str) -> int:
    from aiokafka.errors import KafkaError

    from pipeline.state_migration import migrate_state
    from runtime.acls import ensure_principals

    target = _settings()
    source = target.replace(logins_topic=from_logins_topic, worker_id=from_worker_id)
    try:
        report = asyncio.run(migrate_state(source, target))
        # The new generation's topics and groups get their principals' ACLs, as
        # `positioning topics` gives them.
        ensure_principals(target)
    except TimeoutError as exc:
        raise _Failed(str(exc)) from None
    except KafkaError as exc:
        raise _kafka_unreachable(target, exc) from None
    click.echo(f"{report.users_copied} users' state copied from {report.source_changelog} to "
               f"{report.target_changelog} ({report.partitions} partitions; "
               f"{report.records_read} records read, {report.deleted_skipped} deleted users "
               "skipped); start the new generation's workers now")
    return 0


# -- dead letters ----------------------------------------------------------------

@positioning.group(cls=_Commands, help="inspect the dead letters; put fixed ones back on the "
                                      "logins topic (docs/operations.md)")
def dlq() -> None:
    pass


def _dlq_filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that select dead letters, shared by ``list`` and ``replay``."""
    for option in reversed([
        click.option("--type", "types", multiple=True, metavar="TYPE",
                     help="only this error type (error.type, e.g. UnknownSchema); repeatable"),
        click.option("--since", metavar="WHEN",
                     help="dead-lettered at or after: ISO-8601 (2025-05-01T12:00:00Z; no zone "
                          "means UTC) or a time ago (90s, 10m, 2h, 3d)"),
        click.option("--until", metavar="WHEN", help="dead-lettered at or before; as --since"),
        click.option("--offsets", "ranges", multiple=True, metavar="P:A-B",
                     help="dead-letter topic partition P, offsets A to B inclusive; also P:A "
                          "(one), P:A- (to the end), P (all of it); repeatable"),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
                     show_default=True, help="seconds to read the topic to its end"),
    ]):
        command = option(command)
    return command


def _dlq_selection(types: tuple[str, ...], since: str | None, until: str | None,
                   ranges: tuple[str, ...]) -> Any:
    """The selection the options describe; a usage error (exit 2) for a bad time or range."""
    from ops.dead_letter_selection import BadSelection, Selection, parse_offsets, parse_time
    from runtime.clock import now_us

    now = now_us()
    try:
        return Selection.of(types, None if since is None else parse_time(since, now),
                            None if until is None else parse_time(until, now),
                            [parse_offsets(r) for r in ranges])
    except BadSelection as exc:
        raise click.UsageError(str(exc)) from None


def _dlq_run(settings: Settings, work: Any) -> Any:
    """Run a dead-letter coroutine; its expected failures become one ``error:`` line."""
    from aiokafka.errors import KafkaError


    try:
        return asyncio.run(work)
    except KafkaError as exc:
        raise _kafka_unreachable(settings, exc) from None


@dlq.command("list", help="the dead letters with their error headers and the login they hold, "
                          "read to the topic's current end; always counted by error type. "
                          "Reads only: commits nothing")
@_dlq_filters
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="show only the latest N matches (the counts cover them all)")
@click.option("--json", "as_json", is_flag=True, help="one JSON document: records and counts")
def dlq_list(types: tuple[str, ...], since: str | None, until: str | None,
             ranges: tuple[str, ...], timeout: float, limit: int | None, as_json: bool) -> int:
    import json

    from ops.dead_letter_listing import list_dead_letters

    settings = _settings()
    selection = _dlq_selection(types, since, until, ranges)
    listing = _dlq_run(settings, list_dead_letters(settings, selection, limit, timeout))
    click.echo(json.dumps(listing.to_json(), indent=2) if as_json else listing.render())
    return 0


@dlq.command(help="put the selected dead letters back on the logins topic, with their key and "
                  "value and a replayed_from header; each is replayed once (the group "
                  "<worker id>.dlq-replay remembers it)")
@_dlq_filters
@click.option("--all", "everything", is_flag=True,
              help="every dead letter not yet replayed (needed when no filter is given)")
@click.option("--dry-run", is_flag=True, help="only show what would be replayed")
def replay(types: tuple[str, ...], since: str | None, until: str | None,
           ranges: tuple[str, ...], timeout: float, everything: bool, dry_run: bool) -> int:
    from ops.dead_letter_replay import replay_dead_letters
    from ops.dead_letter_selection import iso_utc

    selection = _dlq_selection(types, since, until, ranges)
    if selection.everything != everything:
        raise click.UsageError("select dead letters with --type, --since, --until or "
                               "--offsets, or replay every one with --all (not both)")
    settings = _settings()
    report = _dlq_run(settings, replay_dead_letters(settings, selection, dry_run=dry_run,
                                                    timeout_s=timeout))
    if dry_run:
        for letter in report.replayed:
            click.echo(f"{letter.where}  {iso_utc(letter.at_us)}  {letter.error_type}")
    click.echo(report.summary())
    return 0


# -- the components, in the foreground ----------------------------------------

def http_limits(settings: Settings) -> HttpLimits:
    """The bounded-HTTP limits of origin and edges, from the settings."""
    return HttpLimits(max_head_bytes=settings.http_max_head_bytes,
                      max_headers=settings.http_max_headers,
                      head_timeout_s=settings.http_head_timeout_s,
                      body_timeout_s=settings.http_body_timeout_s)


def _serve(app: Callable[..., Any], host: str, port: int, limits: HttpLimits) -> int:
    """Run an ASGI app under uvicorn until it stops; 1 if it never started (port taken...)."""
    import uvicorn

    from runtime.http_protocol import server_settings

    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on",
                            **server_settings(limits))
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else EXIT_FAILED


@positioning.group(cls=_Commands, help="the keys offers are signed with (docs/operations.md)")
def keys() -> None:
    pass


@keys.command("rotate", help="add a ticket key and an offer signing key that sign in "
                             "--publish seconds; retire the others once every ticket and offer "
                             "they signed has expired. No component restarts")
@click.option("--publish", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="seconds the new keys are known to every component before they sign")
@click.option("--only", type=click.Choice(["tickets", "offers"]), default=None,
              help="rotate one kind of key only")
def keys_rotate(publish: float, only: str | None) -> int:
    from runtime.offer_keys import rotate_offer_keys
    from runtime.ticket_secret import rotate_ticket_keys

    def utc(us: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(us / 1e6))

    settings, now = _settings(), time.time_ns() // 1000
    if only in (None, "tickets"):
        ticket = rotate_ticket_keys(settings, now, publish)
        click.echo(f"tickets  key {ticket.kid} signs from {utc(ticket.sign_from_us)}; older "
                   f"keys verify until {utc(ticket.retire_at_us)}")
    if only in (None, "offers"):
        offer = rotate_offer_keys(settings, now, publish)
        click.echo(f"offers   key {offer.kid} signs from {utc(offer.sign_from_us)}; older keys "
                   f"are trusted until {utc(offer.retire_at_us)}"
                   + (f"; removed {', '.join(offer.retired)}" if offer.retired else ""))
    return 0


@positioning.command(help="run the origin (login API, sync baseline, web client)")
@click.option("--port", type=int, default=None, help="default: POSITIONING_ORIGIN_PORT (8000)")
def origin(port: int | None) -> int:
    from origin.app import create_app

    settings = _settings()
    return _serve(create_app(settings), settings.origin_host, port or settings.origin_port,
                  http_limits(settings))


@positioning.command(help="run the Faust offer worker in the foreground")
@click.option("--crashes", type=int, default=0, hidden=True,
              help="crashes in a row before this start (set by the re-exec after a crash)")
def worker(crashes: int) -> int:
    import mode.loop
    from faust import Worker

    from pipeline.worker import create_app
    from runtime.kafka_preflight import preflight
    from runtime.kafka_security import Role, kafka_access
    from runtime.state_owner import claim
    from runtime.topics import ensure_topics

    settings = _settings()
    started = time.monotonic()
    try:
        # Its access first: a refused certificate or password, or rights that are not
        # the worker role's, stop it here for good. Then the topics, verified as the
        # worker (a wrong one, a changed partition count above all, stops the worker
        # before it could dead-letter every login).
        access = kafka_access(settings, Role.WORKER)
        asyncio.run(preflight(settings, access))
        report = asyncio.run(ensure_topics(settings, access=access))
        settings = report.durability.applied_to(settings)
        # The state on disk holds offsets of one cluster's changelog (runtime/state_owner.py).
        claim(settings.worker_state_dir, report.cluster_id, "the worker's state")
        # uvloop, as `faust -L uvloop` would: the worker's main thread is busy, and
        # asyncio's pure-Python loop is the slower of the two (docs/performance.md, "The worker").
        mode.loop.use("uvloop")
        app = create_app(settings, on_wedged=lambda reason: _restart_after_crash(
            crashes, reason, time.monotonic() - started))
        Worker(app, loglevel="info", redirect_stdouts=False).execute_from_commandline()
        return 0
    except SystemExit as exc:
        if exc.code in (0, None):
            return 0
        crash: BaseException = exc
    except Exception as exc:  # Faust re-raises what crashed it
        if _exit_code_of(exc) is not None:
            raise  # systematic (a wrong topic, access or key): a restart would not help
        crash = exc
    _restart_after_crash(crashes, crash, time.monotonic() - started)


def _restart_after_crash(crashes_before: int, crash: BaseException, ran_s: float) -> NoReturn:
    """Replace this process with a fresh worker, loudly, after a growing pause.

    Faust stops the whole worker when its consumer fails (for instance when
    the broker disappears in the middle of a group coordination). Its
    offsets are committed only up to what it finished, so a fresh worker in
    the same process (same pid, same state directory) picks up exactly
    there. Crashes in a row back off 1, 2, 4 ... 30 s; a worker that ran a
    minute (``ran_s`` > 60) starts the count again.
    """
    crashes = 1 if ran_s > 60 else crashes_before + 1
    delay = min(30, 2 ** (crashes - 1))
    logging.getLogger("positioning.worker").critical(
        "the worker crashed (%r) after %.0f s; crash %d in a row, restarting in %d s",
        crash, ran_s, crashes, delay)
    sys.stderr.flush()
    sys.stdout.flush()
    time.sleep(delay)
    os.execv(sys.executable, [sys.executable, "-m", "cli.main", "worker",
                              "--crashes", str(crashes)])


@positioning.command(help="run one edge node in the foreground")
@click.option("--region", required=True, help="a name for the node, e.g. eu")
@click.option("--port", type=int, required=True)
@click.option("--data-dir", default=None, help="default: <POSITIONING_HOME>/edge/<region>")
def edge(region: str, port: int, data_dir: str | None) -> int:
    from pathlib import Path

    from prometheus_client import start_http_server

    from edge.app import create_app

    settings = _settings()
    directory = Path(data_dir) if data_dir else settings.edge_data_dir(region)
    app = create_app(settings, region, directory)
    if settings.edge_metrics_port_offset:
        # /metrics for operators only, on a listener of its own (prometheus_client's).
        metrics_port = port + settings.edge_metrics_port_offset
        try:
            start_http_server(metrics_port, addr=settings.edge_metrics_host,
                              registry=app.state.node.metrics.registry)
        except OSError as exc:
            raise _Failed(f"cannot serve /metrics on {settings.edge_metrics_host}:"
                          f"{metrics_port}: {exc.strerror}") from None
    return _serve(app, settings.edge_host, port, http_limits(settings))


@positioning.command("front-door",
                     help="run the front door (HAProxy before origin and edges) in the "
                          "foreground, after checking its configuration")
def front_door() -> int:
    from devstack.front_door import run

    return run(_settings())


# -- the whole stack, in the background ---------------------------------------

@positioning.command(help="start the whole local stack (idempotent)")
@click.option("--timeout", type=float, default=120, help="seconds to wait for each component")
def up(timeout: float) -> int:
    from aiokafka.errors import KafkaError

    from devstack.front_door import public_url
    from devstack.stack import Stack

    settings = _settings()
    try:
        Stack(settings).up(timeout=timeout)
    except KafkaError as exc:
        raise _kafka_unreachable(settings, exc) from None
    click.echo(f"stack up: origin http://{settings.origin_host}:{settings.origin_port}/ , edges "
               + ", ".join(f"{r} http://{settings.edge_host}:{p}"
                           for r, p in settings.edge_ports.items())
               + (f", front door {public_url(settings)}/"
                  if settings.front_door else ""))
    return 0


@positioning.command(help="stop the whole local stack")
def down() -> int:
    from devstack.stack import Stack

    Stack(_settings()).down()
    return 0


# -- load, measurements and faults --------------------------------------------

@positioning.command(help="the user story: time to offer, three ways")
@click.option("--users", type=int, default=50)
@click.option("--gap", type=float, default=1.0,
              help="seconds the user spends between login and wanting the offer")
@click.option("--origin-delay", type=float, default=60.0, help="one-way ms to the origin")
@click.option("--edge-delay", type=float, default=5.0, help="one-way ms to the edge")
@click.option("--region", default="eu", help="which edge the users are near")
@click.option("--concurrency", type=int, default=10)
@click.option("--quiet", is_flag=True, help="no progress bar")
def story(users: int, gap: float, origin_delay: float, edge_delay: float, region: str,
          concurrency: int, quiet: bool) -> int:
    import httpx

    from loadtest.story import Story, StoryConfig, render_table, write_report

    settings = _settings()
    config = StoryConfig(users=users, gap_s=gap, origin_one_way_ms=origin_delay,
                         edge_one_way_ms=edge_delay, region=region, concurrency=concurrency)
    try:
        report = asyncio.run(Story(settings, config).run(progress=not quiet))
    except httpx.TransportError as exc:
        raise _Failed(f"the stack did not answer ({type(exc).__name__}: {exc}); "
                      "is it up? (positioning up)") from None
    json_path, html_path = write_report(report, settings.home / "reports")
    click.echo()
    click.echo(render_table(report))
    click.echo(f"\nreport: {json_path}\nchart:  {html_path}")
    return 0 if not report["errors"] else EXIT_FAILED


@positioning.command(help="the benchmarks; JSON results in <home>/bench/")
@click.option("--quick", is_flag=True, help="a run of a few minutes, smaller data")
def bench(quick: bool) -> int:
    from loadtest.bench import wrk
    from loadtest.bench.figures import render_table
    from loadtest.bench.runner import Bench, write

    wrk.require()  # before the run's folder is made
    settings = _settings()
    report = Bench(settings, quick=quick).run()
    path = write(report, settings.home)
    click.echo()
    click.echo(render_table(report))
    click.echo(f"\nresults: {path}")
    return 0


@positioning.command(help="fault injection with counting: kill a component while logins flow, "
                          "then check every acked login on every edge")
@click.option("--kill", required=True,
              help="worker, edge, origin or broker (or several, comma-separated)")
@click.option("--runs", type=int, default=20, help="runs per component")
@click.option("--logins", type=int, default=500, help="logins per run")
@click.option("--rate", type=float, default=100.0, help="logins per second")
@click.option("--users", type=int, default=50, help="distinct users per run")
@click.option("--max-down", type=float, default=12.0,
              help="a killed component stays down a random 0..this many seconds")
@click.option("--ttl", type=int, default=60,
              help="ticket TTL of the chaos stack (the tombstone check waits for it)")
@click.option("--model-latency-ms", type=float, default=100.0)
@click.option("--seed", type=int, default=None)
@click.option("--keep-stack", is_flag=True, help="leave the chaos stack up")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="worker processes in the chaos stack; --kill worker SIGKILLs one at random")
@click.option("--nodes", type=click.IntRange(min=1), default=None,
              help="Kafka nodes of the chaos stack (default POSITIONING_KAFKA_NODES); "
                   "--kill broker SIGKILLs one at random")
@click.option("--quiet", is_flag=True, help="no progress bar")
def chaos(kill: str, runs: int, logins: int, rate: float, users: int, max_down: float, ttl: int,
          model_latency_ms: float, seed: int | None, keep_stack: bool, workers: int,
          nodes: int | None, quiet: bool) -> int:
    from devstack.stack import StackError
    from loadtest.chaos import Chaos, ChaosConfig, passed, render_table, write_report

    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    settings = _settings()
    config = ChaosConfig(kill=tuple(k.strip() for k in kill.split(",") if k.strip()),
                         runs=runs, logins=logins, rate=rate, users=users, max_down_s=max_down,
                         ttl_s=ttl, model_latency_ms=model_latency_ms, seed=seed,
                         keep_stack=keep_stack, workers=workers, nodes=nodes)
    try:
        report = Chaos(settings, config).run(progress=not quiet)
    except (ValueError, StackError) as exc:
        raise _Failed(str(exc), EXIT_USAGE) from None
    path = write_report(report, settings.home / "chaos")
    click.echo()
    click.echo(render_table(report))
    click.echo(f"\nreport: {path}")
    return 0 if passed(report) else EXIT_FAILED


@positioning.command(help="produce synthetic logins onto the logins topic")
@click.option("--count", type=int, default=1000)
@click.option("--rate", type=float, default=0.0, help="logins per second; 0 = flat out")
@click.option("--users", type=int, default=None, help="distinct users (default count/3)")
@click.option("--seed", type=int, default=1)
@click.option("--quiet", is_flag=True, help="no progress bar")
def produce(count: int, rate: float, users: int | None, seed: int, quiet: bool) -> int:
    from aiokafka.errors import KafkaError

    from loadtest.produce import produce as produce_logins

    settings = _settings()
    try:
        summary = asyncio.run(produce_logins(settings, count, rate, users=users, seed=seed,
                                             progress=not quiet))
    except KafkaError as exc:
        raise _kafka_unreachable(settings, exc) from None
    click.echo(summary.render())
    return 0 if summary.failed == 0 else EXIT_FAILED


# -- operating the running stack ----------------------------------------------

@positioning.command("status", help="one view of every component, the brokers and the "
                                    "worker group's lag; exit 1 when anything is unhealthy")
@click.option("--json", "as_json", is_flag=True, help="the report as JSON, for a script")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=1.5, show_default=True,
              help="seconds each probe may take")
def stack_status(as_json: bool, timeout: float) -> int:
    import json

    from ops.status import collect
    from ops.status_text import render

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    report = asyncio.run(collect(_settings(), timeout))
    click.echo(json.dumps(report, indent=2) if as_json else render(report))
    return 0 if report["healthy"] else EXIT_FAILED


def _expected_failures() -> dict[type[Exception], int]:
    """Each error a command stops with on purpose, and its exit code.

    An expected failure is a refusal the message explains (a topic or a
    principal that does not match, a broker that did not start, a key file
    that is unusable): ``main`` prints ``error: <message>``, no traceback. Any
    other exception is a bug and keeps its traceback. Imported only once an
    error escaped, so a command still loads only its own component.
    """
    from devstack.broker.jars import JarsUnavailable
    from devstack.broker.local import BrokerError
    from devstack.front_door import FrontDoorError
    from devstack.processes import Unkillable
    from devstack.stack import StackError
    from loadtest.bench.wrk import WrkMissing
    from ops.dead_letters import DeadLetterError
    from ops.replay_progress import ProgressFull, ProgressUnreadable
    from pipeline.state_migration import MigrationRefused
    from runtime.state_owner import StateOfAnotherCluster
    from runtime.ticket_secret import SecretFileError
    from runtime.topics import TopicMismatch

    failures: tuple[type[Exception], ...] = (
        BrokerError, JarsUnavailable, Unkillable, StackError, FrontDoorError,  # local processes
        TopicMismatch, MigrationRefused, StateOfAnotherCluster,                # topics and state
        KafkaAccessError, OfferKeyError, SecretFileError,                      # rights and keys
        DeadLetterError, ProgressFull, ProgressUnreadable,                     # dead letters
        WrkMissing,                                                            # benchmarks
    )
    return dict.fromkeys(failures, EXIT_FAILED)


def _exit_code_of(exc: Exception) -> int | None:
    """The exit code of an expected failure (``_expected_failures``); None for a bug."""
    for kind, code in _expected_failures().items():
        if isinstance(exc, kind):
            return code
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``positioning`` with ``argv`` (default: the process's arguments); the exit code.

    Usage errors exit 2, failures 1 (``error: ...`` on stderr), and Ctrl-C 130
    as for any program killed by SIGINT (click alone would say 1).
    """
    try:
        code = positioning.main(args=list(argv) if argv is not None else None,
                                prog_name="positioning", standalone_mode=False)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        click.echo(exc.code, err=True)
        return EXIT_FAILED
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
