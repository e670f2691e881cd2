"""Background processes we started: are they alive, are they ours, stopping them.

A pid file alone proves nothing (the pid may be reused after a crash), so a
process counts as ours only if it is alive and its command line holds the
arguments we started it with.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True for a running process; an exited one not yet reaped (a zombie) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def runs_with(pid: int, arguments: Iterable[str]) -> bool:
    """The process is alive and every one of ``arguments`` is on its command line."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return all(arg.encode() in cmdline for arg in arguments)


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM the process group, wait up to ``timeout``, then SIGKILL it."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        kill(pid)


def kill(pid: int) -> None:
    """SIGKILL the process group, as a crash would, and wait until it is gone."""
    _signal_group(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.02)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or ``(no log)`` if it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
