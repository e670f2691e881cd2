"""The worker's readiness page: where it is and what it answers (no Faust import).

``GET http://127.0.0.1:<worker_web_port>/ready/`` on the worker's Faust web
server answers

- 200 ``{"ready": true, "partitions": [0, 2]}`` once the worker has started
  (its first table recovery finished and its tasks run), its agent runs, and
  no rebalance or table recovery is under way; ``partitions`` are the
  ``logins`` partitions it holds now (possibly none, when the group has more
  workers than partitions);
- 503 ``{"ready": false, "reason": "..."}`` otherwise, the reason saying
  which of those conditions does not hold; a worker whose dead-letter
  circuit breaker tripped (pipeline/breaker.py) answers 503 with the
  breaker's reason until it is restarted.

The port: ``worker_web_port`` 0 turns the web server off (an app built in a
test's own process needs none). A worker started as a process always gets a
real port: launchers whose settings say 0 choose a free port and pass it in
the worker's environment (``devstack.stack.worker_component``,
``tests.helpers.start_worker``), so they know the address before the worker
starts. Faust itself, asked for port 0, would bind a port of the OS's choice
and report it nowhere (its own URL would say ``:0``), so the launcher
choosing is the simple reliable way.

This module has no Faust import so that launchers (``devstack``) can use the
address without loading the worker.
"""

from __future__ import annotations

from typing import Any

READY_PATH = "/ready/"
WEB_HOST = "127.0.0.1"
"""The worker's web server listens on loopback only."""


def ready_url(port: int) -> str:
    """The readiness page of a worker whose web server listens on ``port`` (> 0)."""
    if port <= 0:
        raise ValueError(f"a worker with web port {port} serves no readiness page")
    return f"http://{WEB_HOST}:{port}{READY_PATH}"


def not_ready_because(*, started: bool, agent_running: bool, rebalancing: bool,
                      recovering: bool, tripped: str | None = None) -> str | None:
    """Why the worker is not ready, or None when it is. The first failing condition wins;
    ``tripped`` (the breaker's reason) comes first."""
    if tripped is not None:
        return tripped
    if not started:
        return "starting: the first table recovery has not finished"
    if not agent_running:
        return "the logins agent is not running"
    if rebalancing:
        return "the consumer group is rebalancing"
    if recovering:
        return "the user-state table is recovering"
    return None


def readiness_body(reason: str | None, partitions: list[int]) -> tuple[int, dict[str, Any]]:
    """The page's HTTP status and JSON body for ``reason`` (None: ready)."""
    if reason is None:
        return 200, {"ready": True, "partitions": partitions}
    return 503, {"ready": False, "reason": reason}
