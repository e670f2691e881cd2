"""The local stack knows where each component says it is ready, before starting it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from devstack.stack import Stack, StackError, components, worker_component, worker_components
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


def test_several_workers_share_the_group_with_ports_and_state_of_their_own(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, workers=3, worker_web_port=6200)
    workers = worker_components(settings)
    assert [w.name for w in workers] == ["worker-1", "worker-2", "worker-3"]
    assert [w.port for w in workers] == [6200, 6201, 6202]
    assert [w.ready_url for w in workers] == [f"http://127.0.0.1:{p}/ready/"
                                              for p in (6200, 6201, 6202)]
    assert [w.env["POSITIONING_WORKER_DATA_DIR"] for w in workers] == [
        str(tmp_path / f"worker-{i}") for i in (1, 2, 3)]
    assert all(w.args == ["worker"] for w in workers)   # one group: the same worker_id
    assert [c.name for c in components(settings)][:3] == ["worker-1", "worker-2", "worker-3"]


def test_several_workers_without_a_web_port_each_get_a_free_one(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, workers=2, worker_web_port=0,
                        worker_data_dir=tmp_path / "state")
    one, two = worker_components(settings)
    assert one.port and two.port and one.port != two.port
    assert two.env["POSITIONING_WORKER_WEB_PORT"] == str(two.port)
    assert two.env["POSITIONING_WORKER_DATA_DIR"] == str(tmp_path / "state" / "worker-2")


def test_a_lone_worker_keeps_its_name_and_state_dir(tmp_path: Path) -> None:
    [worker] = worker_components(Settings(home=tmp_path, workers=1))
    assert worker.name == "worker" and "POSITIONING_WORKER_DATA_DIR" not in worker.env


def test_a_stack_refuses_one_kafka_user_for_every_component(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_username="admin", kafka_password=SecretStr("x"))
    with pytest.raises(StackError, match="a stack runs a user per role"):
        Stack(settings).up()
