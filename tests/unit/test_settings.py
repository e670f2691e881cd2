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


def test_settings_read_os_environ_and_keywords_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSITIONING_PARTITIONS", "9")
    monkeypatch.setenv("KAFKA_HOME", "/opt/kafka")
    monkeypatch.setenv("POSITIONING_TICKET_TTL_S", "60")
    monkeypatch.setenv("POSITIONING_EDGES", "")  # empty: the default
    settings = Settings(home=Path("/tmp/y"), ticket_ttl_s=30)
    assert settings.partitions == 9
    assert settings.kafka_home == Path("/opt/kafka")
    assert settings.ticket_ttl_s == 30
    assert settings.edge_ports == {"eu": 8100, "us": 8101}
    assert Settings.from_env({}).partitions == 6  # from_env(mapping) reads the mapping alone


def test_every_setting_round_trips_through_the_environment(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap_servers="k:9092", kafka_controller_port=9999,
                        kafka_home=tmp_path / "kafka", ticket_secret="k1:" + "s" * 20,
                        worker_data_dir=tmp_path / "w", trusted_proxies=("10.0.0.1",),
                        cors_origins=(), edges=("ap=8200",), login_timeout_s=0.25)
    assert Settings.from_env(settings.to_env()) == settings
    assert settings.to_env()["POSITIONING_TICKET_SECRET"] == "k1:" + "s" * 20


def test_the_ticket_secret_is_kept_out_of_reprs() -> None:
    settings = Settings(ticket_secret="k1:" + "z" * 40)
    assert "zzzz" not in repr(settings) and "zzzz" not in str(settings)
    assert settings.ticket_secret is not None
    assert settings.ticket_secret.get_secret_value() == "k1:" + "z" * 40


def test_settings_are_immutable_and_replace_validates() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ValueError):
        settings.partitions = 3  # type: ignore[misc]
    assert settings.replace(partitions=3).partitions == 3
    assert settings.partitions == 6
    with pytest.raises(ValueError, match="partitions"):
        settings.replace(partitions=0)
    with pytest.raises(ValueError, match="bogus"):
        settings.replace(bogus=1)


def test_only_the_documented_variable_names_configure_anything() -> None:
    """A variable named like the field itself (``home``, ``partitions``) is not a setting."""
    settings = Settings.from_env({"home": "/elsewhere", "partitions": "3",
                                  "POSITIONING_PARTITIONS": "5"})
    assert settings.home == Settings.from_env({}).home
    assert settings.partitions == 5


def test_a_renamed_variable_is_read_for_a_release_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="POSITIONING_TICKET_TTL is renamed "
                                           "POSITIONING_TICKET_TTL_S"):
        assert Settings.from_env({"POSITIONING_TICKET_TTL": "120"}).ticket_ttl_s == 120
    # The new name wins when both are set.
    both = {"POSITIONING_TICKET_TTL": "120", "POSITIONING_TICKET_TTL_S": "240"}
    assert Settings.from_env(both).ticket_ttl_s == 240


def test_every_variable_is_the_prefix_and_the_field_name_with_its_unit() -> None:
    from runtime.settings import ENV_PREFIX, RENAMED_VARIABLES, env_var

    ecosystem = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS", "kafka_home": "KAFKA_HOME"}
    for name in Settings.model_fields:
        assert env_var(name) == ecosystem.get(name, ENV_PREFIX + name.upper())
    assert all(field in Settings.model_fields and env_var(field) != old
               for old, field in RENAMED_VARIABLES.items())
