"""Settings come from the environment, with clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import Settings


def test_defaults_point_at_the_local_broker() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert not settings.uses_external_kafka
    assert settings.partitions == 6
    assert settings.kafka_dir == Path(".positioning/kafka")


def test_kafka_bootstrap_servers_overrides_the_local_broker() -> None:
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"})
    assert settings.bootstrap_servers == "k1:9092,k2:9092"
    assert settings.uses_external_kafka


def test_values_are_parsed_and_round_trip_through_the_environment() -> None:
    env = {"POSITIONING_PARTITIONS": "12", "POSITIONING_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
           "POSITIONING_MODEL_LATENCY_MS": "2.5", "POSITIONING_HOME": "/tmp/x"}
    settings = Settings.from_env(env)
    assert settings.partitions == 12
    assert settings.trusted_proxies == ("10.0.0.1", "10.0.0.2")
    assert settings.model_latency_ms == 2.5
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize("var,value", [("POSITIONING_PARTITIONS", "0"),
                                       ("POSITIONING_PARTITIONS", "six"),
                                       ("POSITIONING_MODEL_LATENCY_MS", "-1")])
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ValueError, match=var):
        Settings.from_env({var: value})


def test_cluster_ids_never_look_like_options() -> None:
    from devstack.broker.local import _random_cluster_id

    ids = {_random_cluster_id() for _ in range(3000)}
    assert len(ids) == 3000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
