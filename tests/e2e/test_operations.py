"""The operator's view of a running stack: `positioning status` and the dashboards under deploy/.

One stack through `positioning up` (free ports, the worker's web port chosen
at start, as the other e2e stacks do), driven so that every labelled series
the dashboard reads exists: logins, lookups of every outcome, a poison login
that is dead-lettered. The tests run in order; the last one SIGKILLs an edge.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from devstack.front_door import client_ca, public_url
from devstack.ports import free_edge_port, free_port, port_in_use
from devstack.processes import kill
from devstack.stack import Stack, components
from ops.components import metrics_url, running_url
from runtime.kafka_security import Role, client_options
from tests.conftest import unique_settings
from tests.dashboard import exposed, load_dashboard, queries, scrape_jobs, selectors
from tests.e2e.local_stack import LocalStack, running
from tests.helpers import ticket_signer, wait_until

pytestmark = pytest.mark.e2e

# Series the stack exposes only after a fault this test does not cause: a 503 means
# Kafka did not acknowledge a login in time (the shared broker stays up here).
NEEDS_A_KAFKA_OUTAGE = {("origin_logins_total", ("outcome", "unavailable"))}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home = tmp_path_factory.mktemp("ops-stack")
    settings = unique_settings(kafka_bootstrap, home, origin_port=free_port(),
                               edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    with running(LocalStack(settings)) as local:
        yield local


def metrics_urls(local: LocalStack) -> dict[str, str]:
    """Component name -> its ``/metrics`` URL, with the paths of deploy/prometheus/prometheus.yml
    (the worker's port read from the running process: it was chosen at start)."""
    paths = {job.name: job.metrics_path for job in scrape_jobs()}
    stack = Stack(local.settings, say=lambda _: None)
    out = {}
    for component in components(local.settings):
        kind = component.args[0]
        if kind not in paths:
            continue
        ready = running_url(stack, component, stack.pid(component))
        assert ready is not None, component.name
        if kind == "edge":  # its operators' listener
            out[component.name] = metrics_url(ready, local.settings)
            continue
        if kind == "front-door":  # HAProxy's exporter, on a listener of its own
            out[component.name] = (f"http://{local.settings.front_door_metrics_listen}"
                                   f"{paths[kind]}")
            continue
        origin = ready.split("/", 3)[:3]
        out[component.name] = "/".join(origin) + paths[kind]
    return out


def scrape(urls: dict[str, str]) -> dict[str, dict[str, list[dict[str, str]]]]:
    out = {}
    for name, url in urls.items():
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200, (name, url, response.status_code)
        out[name] = exposed(response.text)
    return out


def merged(pages: dict[str, dict[str, list[dict[str, str]]]]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for page in pages.values():
        for name, label_sets in page.items():
            out.setdefault(name, []).extend(label_sets)
    return out


async def produce_poison(local: LocalStack) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=local.settings.bootstrap_servers,
        **client_options(local.settings, Role.ADMIN), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(local.settings.logins_topic, b"not avro", key=b"mallory")
    finally:
        await producer.stop()


def drive(local: LocalStack) -> None:
    """Logins, lookups found / pending / rejected on both edges, and a dead letter."""
    for user in ("ops-ada", "ops-bo"):
        login = httpx.post(f"{local.origin}/login", json={"user_id": user, "ip": "81.2.69.160"},
                           timeout=10)
        assert login.status_code == 202, login.text
        ticket = login.json()["ticket"]
        for region in ("eu", "us"):
            found = httpx.get(f"{local.edge(region)}/offers/{ticket}", params={"wait": 20},
                              timeout=30)
            assert found.status_code == 200
    for region in ("eu", "us"):
        assert httpx.get(f"{local.edge(region)}/offers/not-a-ticket", timeout=5).status_code == 400
    # A ticket signed with the stack's key whose offer never comes: no login was sent.
    pending = ticket_signer(local.settings, 600).issue().token
    assert httpx.get(f"{local.edge('eu')}/offers/{pending}", timeout=5).status_code == 404
    asyncio.run(produce_poison(local))


def test_every_metric_the_dashboard_queries_is_exposed(stack: LocalStack) -> None:
    drive(stack)
    urls = metrics_urls(stack)
    wanted = [s for q in queries(load_dashboard()) for s in selectors(q)]

    def missing() -> list[str]:
        series = merged(scrape(urls))
        out = []
        for selector in wanted:
            label_sets = series.get(selector.name)
            if not label_sets:
                out.append(f"{selector.name}: not exposed")
                continue
            if not any(selector.labels <= set(labels) for labels in label_sets):
                out.append(f"{selector.name}: no series with labels {sorted(selector.labels)}")
            for matcher in selector.equal:
                if (selector.name, matcher) in NEEDS_A_KAFKA_OUTAGE:
                    continue
                if not any(labels.get(matcher[0]) == matcher[1] for labels in label_sets):
                    out.append(f"{selector.name}: no series with {matcher[0]}={matcher[1]!r}")
        return out

    # The edges report their lag every 5 s, the worker its lag once it fetched: wait for them.
    try:
        wait_until(lambda: not missing(), 30, "every series the dashboard queries")
    except AssertionError:
        pytest.fail("missing on the stack's /metrics pages: " + "; ".join(missing()))
    assert len({s.name for s in wanted}) >= 9


def test_the_scrape_config_paths_answer_on_the_stack(stack: LocalStack) -> None:
    urls = metrics_urls(stack)
    jobs = {job.name for job in scrape_jobs()}
    kinds = {c.args[0] for c in components(stack.settings)}
    assert jobs <= kinds, "every scrape job is a kind of component the stack runs"
    kind_of = {c.name: c.args[0] for c in components(stack.settings)}
    assert {kind_of[name] for name in urls} == jobs
    pages = scrape(urls)
    assert "origin_logins_total" in pages["origin"]
    assert "worker_logins_total" in pages["worker"]
    assert all("edge_offers_stored" in pages[f"edge-{r}"] for r in ("eu", "us"))
    assert "haproxy_server_status" in pages["front-door"]
    # Only the operators' listener has the exporter: the public port answers 404.
    door = httpx.get(f"{public_url(stack.settings)}/metrics", timeout=5,
                     verify=str(client_ca(stack.settings)))
    assert door.status_code == 404


def status(local: LocalStack, *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = local.cli("status", *args, timeout=30)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def test_status_reports_every_component_up_and_ready(stack: LocalStack) -> None:
    code, out, took = status(stack, "--json")
    report = json.loads(out)
    assert code == 0, out
    assert report["healthy"] and report["problems"] == []
    names = [c["name"] for c in report["components"]]
    assert names == [c.name for c in components(stack.settings)]
    assert all(c["up"] and c["ready"] and c["managed"] and c["pid"] for c in report["components"])
    edges = {c["name"]: c["figures"] for c in report["components"] if "figures" in c}
    assert set(edges) == {"edge-eu", "edge-us"}
    for figures in edges.values():
        assert figures["offers_stored"] >= 2
        assert figures["positioned"] >= 2 and figures["positioning_p50_s"] > 0
        assert figures["positioning_p99_s"] >= figures["positioning_p50_s"]
    assert report["kafka"]["external"] and report["kafka"]["nodes"]
    assert all(n["up"] for n in report["kafka"]["nodes"])
    group = report["worker_group"]
    assert group["group"] == stack.settings.worker_id
    assert [p["partition"] for p in group["partitions"]] == list(range(stack.settings.partitions))
    assert sum(p["end"] for p in group["partitions"]) >= 3      # two logins and the poison
    letters = report["dead_letters"]                           # the poison, once dead-lettered
    assert letters["total"] >= 1 and sum(letters["by_error_type"].values()) == letters["total"]
    assert took < 10 and report["took_s"] < 4
    code, text, _ = status(stack)
    assert code == 0 and text.startswith("status: healthy"), text


def test_status_reports_a_killed_edge_down_and_exits_1(stack: LocalStack) -> None:
    port = stack.settings.edge_ports["eu"]
    kill(stack.pids()["edge-eu"])
    wait_until(lambda: not port_in_use("127.0.0.1", port), 10, "the killed edge's port to close")
    code, out, took = status(stack, "--json")
    report = json.loads(out)
    assert code == 1, out
    edge = next(c for c in report["components"] if c["name"] == "edge-eu")
    assert not edge["up"] and not edge["ready"] and edge["pid"] is None
    assert "nothing answers" in edge["reason"]
    assert report["problems"] == [f"edge-eu: down: {edge['reason']}"]
    others = [c for c in report["components"] if c["name"] != "edge-eu"]
    assert all(c["up"] and c["ready"] for c in others)
    assert took < 10
    code, text, _ = status(stack)
    assert code == 1 and text.startswith("status: UNHEALTHY (1 problem)"), text
    assert "edge-eu" in text.split("problems")[-1]
