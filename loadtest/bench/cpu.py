"""CPU used by each process of the stack during a measurement, as a share of one core.

The whole stack shares this machine's cores, so "which process ate the
CPU" is the first question behind a latency figure that misses. The CPU
times come from psutil; a process that is gone, or that we may not inspect,
is left out of the shares.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping

# psutil ships no type information; its results are checked where they enter our types.
import psutil


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, or None if it cannot be read."""
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):  # ValueError: pid < 0
        return None
    return float(times.user + times.system)


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's children that exited and were waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuShares:
    """Start before a measurement, ``stop()`` after: name → share of one core (1.0 = a core).

    ``children`` names the CPU of this process's children that finished and
    were waited for in between (a load generator run with ``subprocess.run``).
    """

    def __init__(self, pids: Mapping[str, int | None], children: str | None = None) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._start = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._children = children
        self._children_start = _children_cpu_seconds()
        self._started = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Name → CPU seconds used since the start per wall-clock second, rounded to 0.001."""
        elapsed = time.perf_counter() - self._started
        if elapsed <= 0:
            return {}
        shares = {}
        for name, pid in self._pids.items():
            before, after = self._start[name], cpu_seconds(pid)
            if before is not None and after is not None:
                shares[name] = round((after - before) / elapsed, 3)
        if self._children is not None:
            shares[self._children] = round(
                (_children_cpu_seconds() - self._children_start) / elapsed, 3)
        return shares
