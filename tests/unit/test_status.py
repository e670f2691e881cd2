"""`positioning status` without a stack: the quantile estimate, the figures of an edge's
``/metrics``, the lag arithmetic, the brokers' problems, the text a person reads, and the
report's shape when a section fails."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from devstack.broker.cluster import ClusterStatus, NodeStatus
from devstack.broker.quorum import QuorumView
from devstack.stack import Stack, components
from edge.metrics import EdgeMetrics
from ops.brokers import external_brokers, local_brokers
from ops.components import probe
from ops.edge_figures import edge_figures
from ops.group_lag import lag_by_partition
from ops.quantiles import histogram_quantile
from ops.status import Probes, Section, SectionResult, collect
from ops.status_text import render
from runtime.settings import Settings

INF = math.inf


def test_the_quantile_interpolates_inside_the_bucket_the_rank_falls_in() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 40.0)]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1 * 10 / 10)   # 10th of 40
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 10 / 20)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * 9.6 / 10)
    # In any order, as a parser may give them.
    assert histogram_quantile(0.5, reversed(buckets)) == histogram_quantile(0.5, buckets)


def test_the_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    buckets = [(0.1, 1.0), (1.0, 2.0), (INF, 10.0)]
    assert histogram_quantile(0.99, buckets) == 1.0
    assert histogram_quantile(0.05, buckets) == pytest.approx(0.05)       # rank 0.5 of 1 in 0..0.1


def test_empty_buckets_are_skipped_and_no_observation_has_no_quantile() -> None:
    assert histogram_quantile(0.5, [(0.1, 0.0), (0.2, 0.0), (0.4, 4.0), (INF, 4.0)]) == \
        pytest.approx(0.3)
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram_quantile(1.5, [(INF, 1.0)])
    with pytest.raises(ValueError, match=r"\+Inf"):
        histogram_quantile(0.5, [(0.1, 1.0)])


def test_the_estimate_matches_the_edge_histogram_it_reads() -> None:
    metrics = EdgeMetrics("eu")
    for seconds in [0.3] * 50 + [0.7] * 49 + [3.0]:
        metrics.positioning_seconds.observe(seconds)
    metrics.lag.labels(region="eu", partition="0").set(4)
    metrics.lag.labels(region="eu", partition="2").set(1)
    metrics.track_stored(lambda: 1234)
    figures = edge_figures(generate_latest(metrics.registry).decode())
    assert figures.offers_stored == 1234
    assert figures.lag == {0: 4, 2: 1} and figures.total_lag == 5
    assert figures.positioned == 100
    # 50 in (0.25, 0.5], 49 in (0.5, 1], 1 in (2.5, 5]: p50 at the top of the first,
    # p99 at the top of the second.
    assert figures.positioning_p50_s == pytest.approx(0.5)
    assert figures.positioning_p99_s == pytest.approx(1.0)
    assert figures.to_json()["lag"] == {"0": 4, "2": 1}


def test_an_edge_before_its_first_offer_has_no_positioning_lag() -> None:
    figures = edge_figures(generate_latest(EdgeMetrics("us").registry).decode())
    assert figures.positioned == 0
    assert figures.positioning_p50_s is None and figures.positioning_p99_s is None
    assert figures.lag == {}


def test_lag_counts_from_the_commit_else_from_the_log_start() -> None:
    lag = lag_by_partition({0: 5, 2: -1}, {0: 0, 1: 3, 2: 0}, {0: 9, 1: 10, 2: 4})
    assert [(p.partition, p.committed, p.lag) for p in lag] == [(0, 5, 4), (1, None, 7),
                                                                (2, -1, 4)]


def test_a_stopped_local_node_and_a_missing_leader_are_problems() -> None:
    settings = Settings(kafka_listen="127.0.0.1:9092")
    nodes = (NodeStatus(1, True, 11, "127.0.0.1:9092"), NodeStatus(2, False, None, "127.0.0.1:9094"))
    found = local_brokers(settings, ClusterStatus(nodes, None))
    assert found.problems == ("kafka node 2 (127.0.0.1:9094) is not running",
                              "kafka: no quorum leader")
    leader = QuorumView(leader_id=1, epoch=3)
    healthy = local_brokers(settings, ClusterStatus(nodes[:1], leader))
    assert healthy.problems == () and healthy.leader == 1


def test_an_external_cluster_reporting_fewer_brokers_than_listed_misses_one() -> None:
    settings = Settings(kafka_bootstrap_servers="a:9092,b:9092,c:9092")
    two = {"brokers": [{"node_id": 2, "host": "b", "port": 9092},
                       {"node_id": 1, "host": "a", "port": 9092}], "controller_id": 1}
    found = external_brokers(settings, two)
    assert [n.node_id for n in found.nodes] == [1, 2]
    assert found.problems == ("kafka: 3 bootstrap servers listed, the cluster reports 2 broker(s)",)
    assert external_brokers(settings.replace(kafka_bootstrap_servers="lb:9092"), two).problems == ()


REPORT = {
    "healthy": False,
    "problems": ["edge-us: down: not running, nothing answers on http://127.0.0.1:8101/readyz",
                 "worker: not ready: the consumer group is rebalancing"],
    "took_s": 0.42,
    "components": [
        {"name": "worker", "up": True, "ready": False, "managed": True, "pid": 41,
         "url": "http://127.0.0.1:6066/ready/", "reason": "the consumer group is rebalancing"},
        {"name": "origin", "up": True, "ready": True, "managed": False, "pid": None,
         "url": "http://127.0.0.1:8000/readyz", "reason": None},
        {"name": "edge-eu", "up": True, "ready": True, "managed": True, "pid": 43,
         "url": "http://127.0.0.1:8100/readyz", "reason": None,
         "figures": {"offers_stored": 120, "lag": {"0": 2, "1": 0}, "total_lag": 2,
                     "positioned": 118, "positioning_p50_s": 0.5123, "positioning_p99_s": 0.61}},
        {"name": "edge-us", "up": False, "ready": False, "managed": False, "pid": None,
         "url": "http://127.0.0.1:8101/readyz",
         "reason": "not running, nothing answers on http://127.0.0.1:8101/readyz"},
    ],
    "kafka": {"external": False, "bootstrap_servers": "127.0.0.1:9092", "leader": 1,
              "nodes": [{"node_id": 1, "address": "127.0.0.1:9092", "up": True, "pid": 40}]},
    "worker_group": {"group": "positioning-worker", "topic": "logins", "total_lag": 3,
                     "partitions": [{"partition": 0, "committed": 7, "end": 10, "lag": 3},
                                    {"partition": 1, "committed": None, "end": 0, "lag": 0}]},
    "dead_letters": {"by_error_type": {"MalformedMessage": 3, "LoginRejected": 1}, "total": 4},
    "replication": {"min_insync_replicas": 2},
}


def test_the_text_names_each_part_its_state_and_every_problem() -> None:
    text = render(REPORT)
    lines = text.splitlines()
    assert lines[0] == "status: UNHEALTHY (2 problems), gathered in 0.4 s"
    line = {ln.split()[0]: ln for ln in lines if ln.startswith("  ") and ln.split()}
    assert line["worker"].split()[1:3] == ["NOT", "READY"]
    assert "pid 41; the consumer group is rebalancing" in line["worker"]
    assert "ready" in line["origin"] and "not managed" in line["origin"]
    assert "DOWN" in line["edge-us"] and "nothing answers" in line["edge-us"]
    assert ("120 offers, lag 2, positioning p50 512 ms p99 610 ms (118 offers)"
            in text)
    assert "  node 1        up         pid 40, 127.0.0.1:9092, quorum leader" in lines
    assert "worker group positioning-worker on logins: lag 3 (p0 3, p1 0)" in lines
    assert "dead letters: 4 (MalformedMessage 3, LoginRejected 1)" in lines
    # A section without a layout of its own is still shown.
    assert "replication" in lines and "  min_insync_replicas     2" in lines
    assert lines[-3:] == ["problems", f"  {REPORT['problems'][0]}", f"  {REPORT['problems'][1]}"]


def test_a_healthy_report_says_so_and_lists_no_problems() -> None:
    report = {**REPORT, "healthy": True, "problems": [], "components": REPORT["components"][1:3]}
    text = render(report)
    assert text.startswith("status: healthy, gathered in 0.4 s")
    assert "problems" not in text


def test_a_failing_or_silent_section_becomes_a_problem_not_an_exception(tmp_path: Path) -> None:
    async def fine(probes: Probes) -> SectionResult:
        return SectionResult({"n": 1})

    async def broken(probes: Probes) -> SectionResult:
        raise ConnectionError("refused")

    async def silent(probes: Probes) -> SectionResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    sections = [Section("fine", fine), Section("broken", broken), Section("silent", silent)]
    report = asyncio.run(collect(Settings(home=tmp_path), 0.2, sections))
    assert report["fine"] == {"n": 1}
    assert report["broken"] == {"error": "ConnectionError: refused"}
    assert report["problems"] == ["broken: could not be read: ConnectionError: refused",
                                  "silent: could not be read: no answer within 0.4 s"]
    assert not report["healthy"] and report["took_s"] < 2
    assert "silent: could not be read: no answer within 0.4 s" in render(report)


def test_a_probe_tells_unmanaged_not_ready_and_down_apart(tmp_path: Path) -> None:
    """No process of this home runs: an answer on the address is "up, not managed"."""
    settings = Settings(home=tmp_path, origin_port=18000, worker_web_port=16066,
                        edges=("eu=18100", "us=18101"))
    edge_page = generate_latest(EdgeMetrics("eu").registry)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.port == 18000:
            return httpx.Response(200, json={"ready": True})
        if request.url.port == 18100 and request.url.path == "/readyz":
            return httpx.Response(503, json={"ready": False, "reason": "catching up: lag 40"})
        if request.url.port == 18200 and request.url.path == "/metrics":  # operators only
            return httpx.Response(200, content=edge_page)
        raise httpx.ConnectError("connection refused", request=request)

    async def probe_all() -> dict[str, Any]:
        stack = Stack(settings, say=lambda _: None)
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            states = [await probe(stack, c, client) for c in components(settings)]
        return {s.name: s for s in states}

    states = asyncio.run(probe_all())
    origin, eu, us, worker = states["origin"], states["edge-eu"], states["edge-us"], states["worker"]
    assert (origin.up, origin.ready, origin.managed, origin.problem) == (True, True, False, None)
    assert (eu.up, eu.ready, eu.reason) == (True, False, "catching up: lag 40")
    assert eu.problem == "edge-eu: not ready: catching up: lag 40"
    assert eu.figures is not None and eu.figures.positioned == 0   # figures even while not ready
    assert not us.up and us.problem == ("edge-us: down: not running, nothing answers on "
                                        "http://127.0.0.1:18101/readyz")
    assert not worker.up and worker.url == "http://127.0.0.1:16066/ready/"


def test_an_edge_page_with_values_int_cannot_take_is_a_figures_error_not_a_crash() -> None:
    """`+Inf` where an integer is expected: the edge is reported, its figures say why not."""
    from ops.components import ComponentState, _with_figures

    page = 'edge_partition_lag{partition="0",region="eu"} +Inf\n'

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=page)

    state = ComponentState("edge-eu", True, True, True, 7, "http://edge/readyz", None)

    async def run() -> ComponentState:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            return await _with_figures(state, client, "http://edge/metrics")

    found = asyncio.run(run())
    assert found.figures is None and found.figures_error is not None
    assert "OverflowError" in found.figures_error


def test_dead_letters_too_many_to_count_in_time_show_their_number() -> None:
    report = {**REPORT, "dead_letters": {"by_error_type": None, "total": 120_000}}
    assert ("dead letters: 120000 (too many to count by type here: `positioning dlq list`)"
            in render(report).splitlines())
