"""The local stack knows where each component says it is ready, before starting it."""

from __future__ import annotations

from devstack.stack import components, worker_component
from runtime.settings import Settings


def test_the_worker_is_ready_when_its_ready_page_says_so_on_its_web_port() -> None:
    worker = worker_component(Settings(worker_web_port=6123))
    assert worker.ready_url == "http://127.0.0.1:6123/ready/"
    assert worker.port == 6123 and worker.env == {"POSITIONING_WORKER_WEB_PORT": "6123"}
    assert [c.name for c in components(Settings())][0] == "worker"


def test_a_worker_without_a_web_port_gets_a_free_one_passed_in_its_environment() -> None:
    worker = worker_component(Settings(worker_web_port=0))
    assert worker.port is not None and worker.port > 0
    assert worker.env == {"POSITIONING_WORKER_WEB_PORT": str(worker.port)}
    assert worker.ready_url == f"http://127.0.0.1:{worker.port}/ready/"
