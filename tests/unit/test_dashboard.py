"""The dashboards under deploy/ without a stack: the PromQL name extraction, what the
Grafana dashboard covers, and the Prometheus targets against the stack's default addresses.
(tests/e2e/test_operations.py checks the names against a running stack's ``/metrics``.)"""

from __future__ import annotations

import pytest

from devstack.stack import Stack, components
from runtime.settings import Settings
from tests.dashboard import (
    Selector,
    exposed,
    load_dashboard,
    metric_names,
    panels,
    queries,
    scrape_jobs,
    selectors,
)


def test_names_come_from_every_selector_of_a_query() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, region) '
        '(rate(edge_positioning_seconds_bucket{region=~"$region"}[$__rate_interval])))'
    ) == {"edge_positioning_seconds_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / ignoring(le) sum(b_count) + on() c") == \
        {"a_total", "b_count", "c"}
    assert metric_names('max_over_time(lag[10m:1m]) > bool 3 or {__name__="by_name"}') == \
        {"lag", "by_name"}
    assert metric_names("sum(increase(x_total[${__range}])) - -y offset 5m") == {"x_total", "y"}
    assert metric_names("label_values(edge_offers_stored, region)") == {"edge_offers_stored"}
    assert metric_names("time() - 3") == set()


def test_selectors_keep_their_label_matchers() -> None:
    assert selectors('rate(worker_logins_total{outcome="dead_lettered", job!="x"}[1m])') == [
        Selector("worker_logins_total", (("outcome", "dead_lettered"),),
                 frozenset({"outcome", "job"}))]


def test_a_query_that_is_not_promql_is_refused() -> None:
    with pytest.raises(ValueError):
        metric_names("sum(rate(x[5m])")


def test_histogram_series_are_exposed_under_their_suffixed_names() -> None:
    page = ("# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n"
            "h_sum 0.3\n# TYPE c counter\nc_total{outcome=\"a\"} 4\n"
            "# TYPE unused counter\n")
    names = exposed(page)
    assert set(names) == {"h_bucket", "h_count", "h_sum", "c_total"}
    assert names["c_total"] == [{"outcome": "a"}]


def test_the_dashboard_covers_what_an_operator_watches() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    wanted = {"edge_positioning_seconds_bucket", "edge_lookup_seconds_count", "edge_open_waiters",
              "edge_partition_lag", "worker_partition_lag", "worker_logins_total",
              "origin_logins_total"}
    assert wanted <= {n for q in queries(dashboard) for n in metric_names(q)}
    dead = [s for q in queries(dashboard) for s in selectors(q)
            if s.name == "worker_logins_total" and ("outcome", "dead_lettered") in s.equal]
    unavailable = [s for q in queries(dashboard) for s in selectors(q)
                   if s.name == "origin_logins_total" and ("outcome", "unavailable") in s.equal]
    assert dead and unavailable


def test_the_scrape_targets_are_the_default_stacks_addresses() -> None:
    settings = Settings()
    stack = Stack(settings, say=lambda _: None)
    jobs = {job.name: job for job in scrape_jobs()}
    assert set(jobs) == {"origin", "worker", "edge", "front-door"}
    assert jobs["worker"].metrics_path == "/metrics/"
    assert jobs["origin"].metrics_path == jobs["edge"].metrics_path == "/metrics"
    assert jobs["front-door"].metrics_path == "/metrics"
    addresses: dict[str, set[str]] = {}
    for component in components(settings):
        address = f"{stack.host_of(component)}:{component.port}"
        if component.args[0] == "edge":  # scraped on the operators' listener
            address = settings.edge_metrics_url(component.port or 0).split("/")[2]
        if component.args[0] == "front-door":  # HAProxy's exporter, a listener of its own
            address = settings.front_door_metrics_listen
        addresses.setdefault(component.args[0], set()).add(address)
    for name, job in jobs.items():
        assert set(job.targets) == addresses[name], name
