"""Background processes we started: are they alive, are they ours, stopping them.

A pid alone proves nothing: after a crash or a reboot the kernel hands the
same pid to an unrelated program. So a pid file records the pid and the
process's creation time (``psutil.Process.create_time()``, seconds since the
epoch), and a process counts as ours only if it is alive, was created at
that time, and its command line holds the arguments we started it with.
Pid files that hold only a pid (written before the creation time was
recorded) are still read; for them the command line is the only check.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# psutil ships no type information; its results are checked where they enter our types.
import psutil

from runtime.waiting import TimedOut, wait_until

# psutil computes creation times from clock ticks (1/100 s on Linux) and the
# boot time; two readings of one process agree far closer than this.
_CREATE_TIME_TOLERANCE_S = 0.01

# How long ``kill`` waits for a SIGKILLed process to be gone, in seconds; only
# a process stuck in the kernel (uninterruptible I/O) takes longer.
KILL_WAIT_S = 30.0


@dataclass(frozen=True)
class PidRecord:
    """What a pid file says: the pid and, if recorded, the process's creation time (epoch s)."""

    pid: int
    create_time: float | None = None


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, ValueError):  # ValueError: a negative pid
        return None


def create_time(pid: int) -> float | None:
    """When the process was created (seconds since the epoch), or None if it is gone."""
    proc = _process(pid)
    if proc is None:
        return None
    try:
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def pid_alive(pid: int) -> bool:
    """True for a running process; an exited one not yet reaped (a zombie) is dead."""
    proc = _process(pid)
    if proc is None:
        return False
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:  # someone else's process, but alive
        return True


def runs_with(pid: int, arguments: Iterable[str], created: float | None = None) -> bool:
    """The process is alive and every one of ``arguments`` is on its command line.

    With ``created`` (seconds since the epoch, as ``create_time`` returns), the
    process must also have been created then: a reused pid fails this check
    even when the new program happens to have the same arguments.
    """
    proc = _process(pid)
    if proc is None or not pid_alive(pid):
        return False
    try:
        if created is not None and abs(proc.create_time() - created) > _CREATE_TIME_TOLERANCE_S:
            return False
        cmdline = list(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return all(arg in cmdline for arg in arguments)


def read_pid_record(pid_file: Path) -> PidRecord | None:
    """The pid file's pid and creation time, or None if it is missing or unreadable.

    The file holds ``<pid> <create_time>`` or, in the older form, ``<pid>`` alone.
    """
    try:
        fields = pid_file.read_text().split()
        pid = int(fields[0])
        created = float(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    return PidRecord(pid, created)


def read_pid(pid_file: Path) -> int | None:
    """The pid a pid file names, or None if it is missing or unreadable."""
    record = read_pid_record(pid_file)
    return record.pid if record is not None else None


def write_pid(pid_file: Path, pid: int) -> None:
    """Record a process we just started: its pid and its creation time.

    Call it while the process cannot have been reaped yet (we hold its
    ``Popen``), so the creation time read is that of our process. If it
    already exited, only the pid is written; the ownership checks then find
    it dead anyway.
    """
    created = create_time(pid)
    pid_file.write_text(f"{pid}\n" if created is None else f"{pid} {created!r}\n")


def running_pid(pid_file: Path, arguments: Iterable[str]) -> int | None:
    """The pid from ``pid_file`` if that process is ours and alive (see the module doc), else None."""
    record = read_pid_record(pid_file)
    if record is None or not runs_with(record.pid, arguments, record.create_time):
        return None
    return record.pid


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid``, or the process alone if it leads none."""
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:
        pass  # no such group: the process may still exist outside one
    except PermissionError:
        pass
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM the process group, wait up to ``timeout`` seconds, then SIGKILL it.

    Raises:
        TimedOut: the process survived SIGKILL for ``KILL_WAIT_S`` seconds.
    """
    _signal_group(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not pid_alive(pid), timeout, f"pid {pid} to exit after SIGTERM",
                   interval_s=0.05)
    except TimedOut:
        kill(pid)


def kill(pid: int) -> None:
    """SIGKILL the process group, as a crash would, and wait until it is gone.

    Raises:
        TimedOut: the process survived SIGKILL for ``KILL_WAIT_S`` seconds.
    """
    _signal_group(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), KILL_WAIT_S, f"pid {pid} to die after SIGKILL",
               interval_s=0.02)


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or ``(no log)`` if it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
