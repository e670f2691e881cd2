"""The ``positioning`` command: one entry point for every component and tool.

Each sub-command imports its component lazily, so ``positioning kafka status``
does not pay for loading Faust.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from runtime.settings import Settings


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from devstack.broker.jars import JarsUnavailable
    from devstack.broker.local import BrokerError, LocalBroker

    broker = LocalBroker(settings)
    if args.action == "fetch":
        from devstack.broker import jars

        try:
            cp = jars.classpath(settings.kafka_home)
        except JarsUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"kafka {jars.KAFKA_VERSION}: {len(cp.split(':'))} jars ready")
        return 0
    if args.action == "status":
        status = broker.status()
        print(status.describe())
        return 0 if status.running else 1
    if args.action == "stop":
        print("kafka stopped" if broker.stop() else "kafka was not running")
        return 0
    try:
        status, started = broker.start()
    except (BrokerError, JarsUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(status.describe() + ("" if started else " (already running; nothing to do)"))
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from runtime.topics import TopicMismatch, ensure_topics

    try:
        reports = asyncio.run(ensure_topics(settings))
    except TopicMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in reports:
        print(f"{r.name:<12} {r.partitions} partitions  {'created' if r.created else 'ok'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="positioning",
        description="Eager, event-driven personal offers pushed to edge nodes.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    kafka = sub.add_parser("kafka", help="the local single-node KRaft broker")
    kafka.add_argument("action", choices=["start", "stop", "status", "fetch"],
                       help="fetch only resolves the jars (from Maven Central or KAFKA_HOME)")
    kafka.set_defaults(run=_kafka)

    topics = sub.add_parser("topics", help="create or check the topics (idempotent)")
    topics.set_defaults(run=_topics)

    from cli import commands

    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request drowns what matters (`up`, `story` poll a lot).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(args.run(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())
