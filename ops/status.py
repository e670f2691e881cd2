"""`positioning status`: one view of the stack, gathered at once, for a person or a script.

The view is made of sections (``SECTIONS``), each a coroutine that gathers
one part and says what is wrong with it:

- ``components``: every component of the stack (devstack/stack.py
  ``components``: origin, each worker, each edge, whatever else the stack
  runs), up and ready, and each edge's figures from its ``/metrics``
  (ops/components.py);
- ``kafka``: the brokers, local nodes or an external cluster's metadata
  (ops/brokers.py);
- ``worker_group``: the lag of the workers' consumer group on ``logins``
  (ops/group_lag.py);
- ``dead_letters``: the dead letters per error type in the whole
  dead-letter topic (ops/dead_letters.py). They are figures, not a fault:
  the worker's breaker is what says a kind of dead letter is systematic,
  and it shows as a worker that is not ready.

Every section runs concurrently and is bounded (each request by
``timeout_s``, the section by ``2 × timeout_s``), so the view comes back in a
couple of seconds even when everything is down: a section that fails or
times out becomes a problem in the report, never an exception. The report is
a JSON-able dict: ``healthy``, ``problems`` (one line each, naming the part),
``took_s``, then one key per section. Another part of the view is one more
``Section``: its key, and a coroutine returning its data and its problems;
ops/status_text.py shows a section it has no layout for as plain key/value
lines.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from devstack.front_door import client_ca
from devstack.stack import Stack, components
from ops.brokers import brokers
from ops.components import probe
from ops.dead_letters import ReadTimedOut, count_by_error_type
from ops.group_lag import group_lag
from runtime.settings import Settings

DEFAULT_TIMEOUT_S = 1.5
"""Seconds each probe (an HTTP request, a Kafka request) may take."""


@dataclass(frozen=True)
class SectionResult:
    """A section's JSON-able data, and why it is unhealthy (empty: it is healthy)."""

    data: Any
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Probes:
    """What every section may use: the settings, the bound per request, an HTTP client."""

    settings: Settings
    timeout_s: float
    http: httpx.AsyncClient

    @property
    def stack(self) -> Stack:
        return Stack(self.settings, say=lambda _: None)


@dataclass(frozen=True)
class Section:
    key: str
    gather: Callable[[Probes], Awaitable[SectionResult]]


async def _components(probes: Probes) -> SectionResult:
    stack = probes.stack
    states = await asyncio.gather(*(probe(stack, c, probes.http)
                                    for c in components(probes.settings)))
    return SectionResult([s.to_json() for s in states],
                         tuple(p for s in states if (p := s.problem) is not None))


async def _kafka(probes: Probes) -> SectionResult:
    found = await brokers(probes.settings, probes.timeout_s)
    return SectionResult(found.to_json(), found.problems)


async def _worker_group(probes: Probes) -> SectionResult:
    lag = await group_lag(probes.settings, probes.timeout_s)
    return SectionResult(lag.to_json())


async def _dead_letters(probes: Probes) -> SectionResult:
    """Counted by type when the topic reads within the probe's bound; a topic too large for
    that gives its size only (``by_error_type`` null): `positioning dlq list` counts it."""
    try:
        counts = await count_by_error_type(probes.settings, timeout_s=probes.timeout_s)
    except ReadTimedOut as exc:
        return SectionResult({"by_error_type": None, "total": exc.expected})
    return SectionResult({"by_error_type": counts, "total": sum(counts.values())})


SECTIONS: tuple[Section, ...] = (
    Section("components", _components),
    Section("kafka", _kafka),
    Section("worker_group", _worker_group),
    Section("dead_letters", _dead_letters),
)


def describe_error(exc: BaseException) -> str:
    """The exception's type and message, once (aiokafka's messages start with the type)."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}" if text else name


async def _bounded(section: Section, probes: Probes) -> SectionResult:
    """The section's result, or its failure (an error or ``2 × timeout_s`` passing) as a problem."""
    try:
        return await asyncio.wait_for(section.gather(probes), timeout=2 * probes.timeout_s)
    except TimeoutError:
        error = f"no answer within {2 * probes.timeout_s:g} s"
    except Exception as exc:  # reported, not raised: the view must come back
        error = describe_error(exc)
    return SectionResult({"error": error}, (f"{section.key}: could not be read: {error}",))


async def collect(settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S,
                  sections: Sequence[Section] = SECTIONS) -> dict[str, Any]:
    """Gather every section at once; the report (module doc). Never raises for a part down."""
    started = time.monotonic()
    # The front door's certificate may come from the home's own CA: trusted besides the
    # system's, never instead of checking.
    verify = ssl.create_default_context()
    ca = client_ca(settings) if settings.front_door else None
    if ca is not None:
        verify.load_verify_locations(cafile=str(ca))
    async with httpx.AsyncClient(timeout=timeout_s, verify=verify) as http:
        probes = Probes(settings, timeout_s, http)
        results = await asyncio.gather(*(_bounded(s, probes) for s in sections))
    problems = [p for r in results for p in r.problems]
    return {"healthy": not problems, "problems": problems,
            "took_s": round(time.monotonic() - started, 3),
            **{s.key: r.data for s, r in zip(sections, results, strict=True)}}
