"""Whether a pid file names a process of ours: alive, not a zombie, not a reused pid."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devstack.processes import (
    PidRecord,
    kill,
    pid_alive,
    read_pid_record,
    running_pid,
    runs_with,
    started_s,
    terminate,
    write_pid,
)
from runtime.waiting import wait_until

MARKER = "positioning-test-sleeper"
SLEEPER = [sys.executable, "-c", "import sys, time; time.sleep(60)", MARKER]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own session, as the stack starts its components."""
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        # Until the child has exec'd, its command line is still its parent's.
        wait_until(lambda: MARKER in psutil.Process(proc.pid).cmdline(), 10,
                   "the sleeper to exec", interval_s=0.01)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_pid_file_records_pid_and_start_since_boot(tmp_path: Path,
                                                     sleeper: subprocess.Popen[bytes]) -> None:
    pid_file = tmp_path / "sleeper.pid"
    write_pid(pid_file, sleeper.pid)
    record = read_pid_record(pid_file)
    assert record is not None and record.pid == sleeper.pid
    since_boot = psutil.Process(sleeper.pid).create_time() - psutil.boot_time()
    assert record.started_s == pytest.approx(since_boot, abs=1.0)
    assert running_pid(pid_file, [MARKER]) == sleeper.pid
    assert running_pid(pid_file, [MARKER, "not-on-its-command-line"]) is None


def test_an_old_pid_file_with_only_a_pid_is_still_read(tmp_path: Path,
                                                       sleeper: subprocess.Popen[bytes]) -> None:
    pid_file = tmp_path / "sleeper.pid"
    pid_file.write_text(f"{sleeper.pid}\n")
    assert read_pid_record(pid_file) == PidRecord(sleeper.pid, None)
    assert running_pid(pid_file, [MARKER]) == sleeper.pid


@pytest.mark.parametrize("text", ["", "not a pid\n", "12 yesterday\n"])
def test_an_unreadable_pid_file_names_no_process(tmp_path: Path, text: str) -> None:
    pid_file = tmp_path / "broken.pid"
    pid_file.write_text(text)
    assert read_pid_record(pid_file) is None
    assert running_pid(pid_file, []) is None
    assert read_pid_record(tmp_path / "missing.pid") is None


def test_a_reused_pid_is_not_ours(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    created = started_s(sleeper.pid)
    assert created is not None
    assert runs_with(sleeper.pid, [MARKER], created)
    # The same pid and command line, but created at another time: another process.
    assert not runs_with(sleeper.pid, [MARKER], created - 3600)
    pid_file = tmp_path / "sleeper.pid"
    pid_file.write_text(f"{sleeper.pid} {created - 3600!r}\n")
    assert running_pid(pid_file, [MARKER]) is None


def test_a_zombie_counts_as_dead(sleeper: subprocess.Popen[bytes]) -> None:
    assert pid_alive(sleeper.pid)
    kill(sleeper.pid)  # returns once the process is gone, though not yet reaped
    assert psutil.Process(sleeper.pid).status() == psutil.STATUS_ZOMBIE
    assert not pid_alive(sleeper.pid)
    assert not runs_with(sleeper.pid, [MARKER])
    sleeper.wait()
    assert not pid_alive(sleeper.pid)


def test_terminate_stops_a_process_that_obeys_sigterm(sleeper: subprocess.Popen[bytes]) -> None:
    terminate(sleeper.pid, timeout=10)
    assert not pid_alive(sleeper.pid)
    assert sleeper.wait(timeout=5) != 0


def test_terminate_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    stubborn = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, signal, sys, time\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
         "pathlib.Path(sys.argv[1]).touch()\n"
         "time.sleep(60)\n", str(ready)],
        start_new_session=True)
    try:
        wait_until(ready.exists, 10, "the child to ignore SIGTERM")
        terminate(stubborn.pid, timeout=0.3)
        assert not pid_alive(stubborn.pid)
        assert stubborn.wait(timeout=5) == -9
    finally:
        stubborn.kill()
        stubborn.wait()


def test_a_missing_process_is_dead() -> None:
    assert not pid_alive(2**22 + 12345)
    assert not runs_with(2**22 + 12345, [])
