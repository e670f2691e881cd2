"""The ``positioning`` command line: commands, options, exit codes and error messages.

Only what needs no broker and no stack: help, usage errors, settings errors,
the status of a broker that is not running, and expected failures turned
into one ``error:`` line (the components are replaced by stubs that fail).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli.main as cli_main
from devstack.ports import free_port_pair

COMMANDS = ["kafka", "topics", "migrate-state", "dlq", "keys", "origin", "worker", "edge", "front-door",
            "up", "down", "story", "bench", "chaos", "produce", "status"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Settings of this test only: its own home, a broker address nothing listens on."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    return {"POSITIONING_HOME": str(tmp_path),
            "POSITIONING_KAFKA_LISTEN": f"127.0.0.1:{free_port_pair()}"}


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner(env=env).invoke(cli_main.positioning, list(args), prog_name="positioning")


def test_help_lists_every_command_in_the_readme_order(env: dict[str, str]) -> None:
    result = run(env, "--help")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.startswith("  ")]
    assert listed == COMMANDS
    assert run(env, "-h").output == result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(env: dict[str, str], command: str) -> None:
    result = run(env, command, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: positioning {command}" in result.output


def test_kafka_lists_its_actions(env: dict[str, str]) -> None:
    result = run(env, "kafka", "--help")
    assert result.exit_code == 0
    for action in ("start", "stop", "status", "fetch"):
        assert f"  {action} " in result.output


def test_the_documented_options_are_there(env: dict[str, str]) -> None:
    chaos = run(env, "chaos", "--help").output
    for option in ("--kill", "--runs", "--logins", "--rate", "--users", "--max-down", "--ttl",
                   "--model-latency-ms", "--seed", "--keep-stack", "--workers", "--quiet"):
        assert option in chaos
    story = run(env, "story", "--help").output
    for option in ("--users", "--gap", "--origin-delay", "--edge-delay", "--region",
                   "--concurrency", "--quiet"):
        assert option in story
    assert "--data-dir" in run(env, "edge", "--help").output
    assert "--quick" in run(env, "bench", "--help").output
    assert "--port" in run(env, "origin", "--help").output


def test_the_worker_restart_count_is_hidden(env: dict[str, str]) -> None:
    assert "--crashes" not in run(env, "worker", "--help").output


@pytest.mark.parametrize("args", [
    [],
    ["--nope"],
    ["no-such-command"],
    ["kafka"],
    ["kafka", "restart"],
    ["origin", "--port", "eighty"],
    ["edge", "--region", "eu"],
    ["chaos"],
    ["produce", "--count"],
    ["dlq", "replay"],  # nothing selected and no --all
    ["dlq", "replay", "--all", "--type", "UnknownSchema"],
    ["dlq", "list", "--since", "yesterday"],
    ["dlq", "list", "--offsets", "2:9-3"],
    ["dlq", "list", "--limit", "-1"],
])
def test_usage_errors_exit_2(env: dict[str, str], args: list[str]) -> None:
    result = run(env, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_kafka_status_exits_1_when_the_broker_is_stopped(env: dict[str, str]) -> None:
    result = run(env, "kafka", "status")
    assert result.exit_code == 1
    assert result.output == f"kafka stopped ({env['POSITIONING_KAFKA_LISTEN']})\n"


def test_kafka_stop_when_nothing_runs_is_fine(env: dict[str, str]) -> None:
    result = run(env, "kafka", "stop")
    assert result.exit_code == 0
    assert result.output == "kafka was not running\n"


def test_invalid_settings_are_one_error_line_and_exit_2(env: dict[str, str]) -> None:
    result = run({**env, "POSITIONING_ORIGIN_PORT": "eighty"}, "kafka", "status")
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "POSITIONING_ORIGIN_PORT" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_help_works_even_with_invalid_settings(env: dict[str, str]) -> None:
    assert run({**env, "POSITIONING_ORIGIN_PORT": "eighty"}, "up", "--help").exit_code == 0


def test_a_broker_that_cannot_start_is_an_error_line(env: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from devstack.broker.local import BrokerError, LocalBroker

    def refuse(self: LocalBroker) -> None:
        raise BrokerError("port 127.0.0.1:9092 is already in use by another program")

    monkeypatch.setattr(LocalBroker, "start", refuse)
    result = run(env, "kafka", "start")
    assert result.exit_code == 1
    assert result.output == "error: port 127.0.0.1:9092 is already in use by another program\n"


def test_topics_without_a_broker_is_an_error_line(env: dict[str, str]) -> None:
    result = run({**env, "POSITIONING_KAFKA_SECURITY": "plaintext"}, "topics")
    assert result.exit_code == 1
    assert f"error: Kafka at {env['POSITIONING_KAFKA_LISTEN']} did not answer" in result.output
    assert "Traceback" not in result.output


def test_topics_in_a_home_without_credentials_names_the_missing_file(env: dict[str, str]) -> None:
    result = run(env, "topics")
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot read the Kafka credentials file ")
    assert "POSITIONING_KAFKA_PASSWORD" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["dlq", "list"], ["dlq", "replay", "--all"]])
def test_dlq_without_a_broker_is_an_error_line(env: dict[str, str], args: list[str]) -> None:
    result = run({**env, "POSITIONING_KAFKA_SECURITY": "plaintext"}, *args)
    assert result.exit_code == 1
    assert f"error: Kafka at {env['POSITIONING_KAFKA_LISTEN']} did not answer" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["up", "down"])
def test_stack_errors_are_an_error_line(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                        command: str) -> None:
    from devstack.stack import Stack, StackError

    def fail(self: Stack, **_: object) -> None:
        raise StackError("origin: port 8000 is already in use by another program")

    monkeypatch.setattr(Stack, command, fail)
    result = run(env, command)
    assert result.exit_code == 1
    assert result.output == "error: origin: port 8000 is already in use by another program\n"


def test_a_bench_without_wrk_stops_before_it_starts_anything(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from loadtest.bench.runner import Bench

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(Bench, "__init__", lambda *a, **k: pytest.fail("a bench was made"))
    result = run(env, "bench", "--quick")
    assert result.exit_code == 1
    assert result.output == ("error: wrk is not installed: `./run bench` installs it, "
                             "or apt-get install wrk\n")


def test_a_chaos_run_that_cannot_be_configured_exits_2(env: dict[str, str]) -> None:
    result = run(env, "chaos", "--kill", "database")
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot kill ['database']")


def test_a_chaos_run_without_workers_exits_2(env: dict[str, str]) -> None:
    result = run(env, "chaos", "--kill", "worker", "--workers", "0")
    assert result.exit_code == 2
    assert "--workers" in result.output


def test_main_returns_the_exit_code(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli_main.main(["kafka", "status"]) == 1
    assert cli_main.main(["--help"]) == 0
    assert cli_main.main(["kafka", "restart"]) == 2


def test_ctrl_c_exits_130_as_for_sigint(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from devstack.stack import Stack

    def interrupted(self: Stack, **_: object) -> None:
        raise KeyboardInterrupt

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(Stack, "up", interrupted)
    assert cli_main.main(["up"]) == 130
    assert "interrupted" in capsys.readouterr().err


class _Replaced(Exception):
    """Stands in for os.execv, which would replace the test process."""


@pytest.mark.parametrize(("crashes_before", "ran_s", "crashes", "delay"), [
    (0, 1.0, 1, 1),
    (1, 1.0, 2, 2),
    (3, 5.0, 4, 8),
    (8, 5.0, 9, 30),
    (8, 61.0, 1, 1),  # a worker that ran a minute starts the count again
])
def test_a_crashed_worker_restarts_itself_after_a_growing_pause(
        monkeypatch: pytest.MonkeyPatch, crashes_before: int, ran_s: float, crashes: int,
        delay: int) -> None:
    paused: list[float] = []
    replaced_by: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        replaced_by.append(argv)
        raise _Replaced

    monkeypatch.setattr(cli_main.time, "sleep", paused.append)
    monkeypatch.setattr(cli_main.os, "execv", execv)
    with pytest.raises(_Replaced):
        cli_main._restart_after_crash(crashes_before, RuntimeError("boom"), ran_s)
    assert paused == [delay]
    assert replaced_by[0][1:] == ["-m", "cli.main", "worker", "--crashes", str(crashes)]


def test_kafka_status_of_a_stopped_cluster_shows_every_node(env: dict[str, str]) -> None:
    host, port = env["POSITIONING_KAFKA_LISTEN"].rsplit(":", 1)
    result = run({**env, "POSITIONING_KAFKA_NODES": "3"}, "kafka", "status")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"kafka node {i + 1} stopped ({host}:{int(port) + 2 * i})" for i in range(3)]
    assert run(env, "kafka", "status", "--nodes", "2").output.count("stopped") == 2
    assert run(env, "kafka", "start", "--nodes", "0").exit_code == 2


def test_an_unexpected_exception_keeps_its_traceback(env: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the errors of `_expected_failures` become an `error:` line; a bug is not hidden.
    from devstack.broker.local import LocalBroker

    def bug(self: LocalBroker) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(LocalBroker, "start", bug)
    result = run(env, "kafka", "start")
    assert isinstance(result.exception, KeyError)
    assert "error:" not in result.output


def test_a_systematic_fault_stops_the_worker_instead_of_restarting_it(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import kafka_security
    from runtime.topics import TopicMismatch

    def mismatch(*_: object, **__: object) -> None:
        raise TopicMismatch("topic logins has 3 partitions; the worker's state expects 6")

    restarts: list[BaseException] = []
    monkeypatch.setattr(kafka_security, "kafka_access", mismatch)
    monkeypatch.setattr(cli_main, "_restart_after_crash",
                        lambda _c, crash, _s: restarts.append(crash))
    result = run(env, "worker")
    assert result.exit_code == 1 and not restarts
    assert result.output == ("error: topic logins has 3 partitions; "
                             "the worker's state expects 6\n")


def test_version_is_the_packages(env: dict[str, str]) -> None:
    from importlib.metadata import version

    result = run(env, "--version")
    assert result.exit_code == 0 and result.output == f"positioning {version('content-positioning')}\n"
