"""Driving wrk (Debian's `wrk` package) and reading its figures."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

EDGE_LOOKUP_LUA = """
local tickets = {}
for line in io.lines(os.getenv("BENCH_TICKETS")) do tickets[#tickets + 1] = line end
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format("GET", "/offers/" .. tickets[math.random(#tickets)])
end
"""

LOGIN_LUA = """
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = string.format('{"user_id": "wrk-%d", "ip": "81.2.69.160"}', math.random(100000))
  return wrk.format("POST", "/login", nil, body)
end
"""


class WrkMissing(RuntimeError):
    """wrk is not on the PATH."""


def require() -> str:
    """The path of wrk.

    Raises:
        WrkMissing: it is not installed.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkMissing("wrk is not installed: `./run bench` installs it, or apt-get install wrk")
    return wrk


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(rps, p50, p99, int(non_2xx.group(1)) if non_2xx else 0,
                     sum(int(g) for g in errors.groups()) if errors else 0)


def run(url: str, script: str, work_dir: Path, seconds: float, connections: int = 32,
        threads: int = 1, env: dict[str, str] | None = None) -> WrkResult:
    wrk = require()
    script_path = work_dir / "bench.lua"
    script_path.write_text(script)
    result = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, int(seconds))}s", "--latency",
         "-s", str(script_path), url],
        capture_output=True, text=True, env={**(env or {}), "PATH": "/usr/bin:/bin"},
        timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr or result.stdout}")
    return parse(result.stdout)
