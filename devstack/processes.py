"""Background processes we started: are they alive, are they ours, stopping them.

A pid alone proves nothing: after a crash or a reboot the kernel hands the
same pid to an unrelated program. So a pid file records the pid and when the
process started, in seconds since boot, and a process counts as ours only if
it is alive, started then, and its command line holds the arguments we
started it with. Since boot, not since the epoch: psutil's epoch creation
time is the start in clock ticks since boot plus the boot time, and the boot
time moves whenever the wall clock is stepped (NTP, a resumed VM), which
would make our own processes look foreign.
Pid files that hold only a pid (written before the creation time was
recorded) are still read; for them the command line is the only check.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from runtime.waiting import TimedOut, wait_until

# The kernel reports the boot time in whole seconds, derived from the wall
# clock, so two readings of one process's start since boot may differ by up
# to a second; a reused pid with our command line in that second is not a risk.
_START_TOLERANCE_S = 1.0

# How long ``kill`` waits for a SIGKILLed process to be gone, in seconds; only
# a process stuck in the kernel (uninterruptible I/O) takes longer.
KILL_WAIT_S = 30.0


@dataclass(frozen=True)
class PidRecord:
    """What a pid file says: the pid and, if recorded, when the process started (s since boot)."""

    pid: int
    started_s: float | None = None


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, ValueError):  # ValueError: a negative pid
        return None


def _started_s(proc: psutil.Process) -> float:
    """When the process started, in seconds since boot (unmoved by wall-clock steps)."""
    return float(proc.create_time() - psutil.boot_time())


def started_s(pid: int) -> float | None:
    """When the process started (seconds since boot), or None if it is gone."""
    proc = _process(pid)
    if proc is None:
        return None
    try:
        return _started_s(proc)
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


def runs_with(pid: int, arguments: Iterable[str], started: float | None = None) -> bool:
    """The process is alive and every one of ``arguments`` is on its command line.

    With ``started`` (seconds since boot, as ``started_s`` returns), the
    process must also have started then: a reused pid fails this check even
    when the new program happens to have the same arguments.
    """
    proc = _process(pid)
    if proc is None or not pid_alive(pid):
        return False
    try:
        if started is not None and abs(_started_s(proc) - started) > _START_TOLERANCE_S:
            return False
        cmdline = list(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return all(arg in cmdline for arg in arguments)


def read_pid_record(pid_file: Path) -> PidRecord | None:
    """The pid file's pid and start time, or None if it is missing or unreadable.

    The file holds ``<pid> <seconds since boot>`` or, in the older form, ``<pid>`` alone.
    """
    try:
        fields = pid_file.read_text().split()
        pid = int(fields[0])
        created = float(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None
    return PidRecord(pid, created)



def write_pid(pid_file: Path, pid: int) -> None:
    """Record a process we just started: its pid and when it started.

    Call it while the process cannot have been reaped yet (we hold its
    ``Popen``), so the start time read is that of our process. If it
    already exited, only the pid is written; the ownership checks then find
    it dead anyway.
    """
    started = started_s(pid)
    pid_file.write_text(f"{pid}\n" if started is None else f"{pid} {started!r}\n")


def running_pid(pid_file: Path, arguments: Iterable[str]) -> int | None:
    """The pid from ``pid_file`` if that process is ours and alive (see the module doc), else None."""
    record = read_pid_record(pid_file)
    if record is None or not runs_with(record.pid, arguments, record.started_s):
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


class Unkillable(RuntimeError):
    """A process survived SIGKILL (stuck in the kernel, e.g. in uninterruptible I/O)."""


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM the process group, wait up to ``timeout`` seconds, then SIGKILL it.

    Raises:
        Unkillable: the process survived SIGKILL for ``KILL_WAIT_S`` seconds.
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
        Unkillable: the process survived SIGKILL for ``KILL_WAIT_S`` seconds.
    """
    _signal_group(pid, signal.SIGKILL)
    try:
        wait_until(lambda: not pid_alive(pid), KILL_WAIT_S, f"pid {pid} to die after SIGKILL",
                   interval_s=0.02)
    except TimedOut:
        raise Unkillable(f"pid {pid} is still there {KILL_WAIT_S:g} s after SIGKILL "
                         "(stuck in the kernel?); its ports and files may still be held") from None


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or ``(no log)`` if it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
