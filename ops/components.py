"""Is a component of the stack up, and ready? One probe per component, never raising.

Up: its process, started by this stack, runs (``Stack.pid``), or, when it
did not start one, something answers on the component's address ("not
managed": another shell, a container, a previous home). Ready: its
``ready_url`` answers 200; any other answer is "up, not ready", with the
reason the page gives. An edge's figures come from its ``/metrics`` page.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil

from devstack.stack import Component, Stack, is_worker
from ops.edge_figures import EdgeFigures, edge_figures
from pipeline.readiness import ready_url
from runtime.settings import Settings, env_var


@dataclass(frozen=True)
class ComponentState:
    """What the probe found; ``reason`` says why it is not healthy (None: it is)."""

    name: str
    up: bool
    ready: bool
    managed: bool
    pid: int | None
    url: str | None
    reason: str | None = None
    figures: EdgeFigures | None = None
    figures_error: str | None = None

    @property
    def problem(self) -> str | None:
        """Why the component is unhealthy, or None: down, not ready, or an edge's figures
        could not be read."""
        if self.reason is not None:
            return f"{self.name}: {'not ready' if self.up else 'down'}: {self.reason}"
        if self.figures_error is not None:
            return f"{self.name}: metrics unreadable: {self.figures_error}"
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "up": self.up, "ready": self.ready,
                               "managed": self.managed, "pid": self.pid, "url": self.url,
                               "reason": self.reason}
        if self.figures is not None:
            out["figures"] = self.figures.to_json()
        if self.figures_error is not None:
            out["figures_error"] = self.figures_error
        return out


def is_edge(component: Component) -> bool:
    return component.args[:1] == ["edge"]


def running_url(stack: Stack, component: Component, pid: int | None) -> str | None:
    """The component's readiness URL as it runs.

    A worker of settings whose ``worker_web_port`` is 0 was given a port
    chosen when it started (devstack/stack.py ``worker_component``); that
    port is in the running process's environment, so it is read from
    there. Such a worker that is not running has no known address (None).
    """
    if not (is_worker(component) and stack.settings.worker_web_port == 0):
        return component.ready_url
    if pid is None:
        return None
    try:
        port = psutil.Process(pid).environ().get(env_var("worker_web_port"))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return ready_url(int(port)) if port and port.isdigit() and int(port) > 0 else None


def metrics_url(readiness: str, settings: Settings) -> str:
    """The ``/metrics`` page of the edge whose ``/readyz`` is ``readiness`` (on a listener
    of its own: ``edge_metrics_port_offset``)."""
    port = urlsplit(readiness).port
    if port is None:
        scheme, netloc, _, _, _ = urlsplit(readiness)
        return urlunsplit((scheme, netloc, "/metrics", "", ""))
    return settings.edge_metrics_url(port)


def _reason_of(response: httpx.Response) -> str:
    """What a not-ready page says: its JSON ``reason`` if it has one, else the status code."""
    try:
        body = response.json()
    except ValueError:
        body = None
    reason = body.get("reason") if isinstance(body, dict) else None
    return str(reason) if reason else f"{response.url} answers HTTP {response.status_code}"


async def probe(stack: Stack, component: Component, client: httpx.AsyncClient) -> ComponentState:
    """Probe one component (the client's timeout bounds each request); never raises."""
    pid = stack.pid(component)
    url = running_url(stack, component, pid)
    managed = pid is not None
    if url is None:
        up = pid is not None
        return ComponentState(component.name, up, up, managed, pid, None,
                              None if up else "not running")
    try:
        response = await client.get(url)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = (f"not answering on {url}: {type(exc).__name__}"
                  if managed else f"not running, nothing answers on {url}")
        return ComponentState(component.name, managed, False, managed, pid, url, reason)
    ready = response.status_code == 200
    state = ComponentState(component.name, True, ready, managed, pid, url,
                           None if ready else _reason_of(response))
    if is_edge(component):
        return await _with_figures(state, client, metrics_url(url, stack.settings))
    return state


async def _with_figures(state: ComponentState, client: httpx.AsyncClient,
                        url: str) -> ComponentState:
    """The edge's state with the figures of its ``/metrics`` page, or why they are missing."""
    try:
        response = await client.get(url)
        response.raise_for_status()
        figures = edge_figures(response.text)
    # KeyError: a sample lacks a label; ArithmeticError: a value int() cannot take (+Inf, NaN).
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError, ArithmeticError) as exc:
        return replace(state, figures_error=f"{url}: {type(exc).__name__}: {exc}")
    return replace(state, figures=figures)
