"""Local TCP ports: whether one is taken, and finding free ones for a stack of our own.

Ports for our own listeners are picked below the kernel's ephemeral range
(``net.ipv4.ip_local_port_range``, 32768-60999 by default). A port the OS hands
out for ``bind(0)`` comes from that range, and so does the local port of every
outgoing connection: a client connecting to a node that is down can be given
the node's own port as its local port (a TCP self-connect), and then the node
cannot bind it when it starts again. A port below the range is never handed
to a connecting client. Within a process a port is handed out once, so two
calls never return the same port before either is bound.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# The lowest port picked for a listener of our own; the highest is just below the
# ephemeral range.
LISTEN_PORT_LOW = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts TCP connections on ``host:port`` (0.5 s connect timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def listen_port_range() -> range:
    """The ports :func:`free_port` picks from: ``LISTEN_PORT_LOW`` up to the start of
    the ephemeral range; 1024-65535 if that range leaves no room below it."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low - LISTEN_PORT_LOW < 1000:
        return range(1024, 65536)
    return range(LISTEN_PORT_LOW, low)


def _bindable(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now. As the servers bind (Kafka,
    uvicorn and HAProxy set SO_REUSEADDR): a port that only closed connections in
    TIME_WAIT still use is free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A port nothing listens on now, below the ephemeral range, not handed out before
    by this process (free now; not reserved: another program may take it later).

    Raises:
        RuntimeError: none found in ``attempts`` tries.
    """
    return free_port_run(1, host, attempts)


def free_port_run(count: int, host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A port p with p, p + 1, ..., p + count − 1 all free, as :func:`free_port` picks
    one (free now; not reserved).

    A local cluster of N Kafka nodes needs 2·N in a row: each node's client
    port and, next to it, its controller's.

    Raises:
        RuntimeError: no such run found in ``attempts`` tries.
    """
    ports = listen_port_range()
    for _ in range(attempts):
        port = random.randrange(ports.start, ports.stop - count + 1)
        run = range(port, port + count)
        if _handed_out.intersection(run) or not all(_bindable(host, p) for p in run):
            continue
        _handed_out.update(run)
        return port
    raise RuntimeError(f"no run of {count} free ports found in {attempts} tries")


def free_port_pair(host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A port p with p and p + 1 both free (a broker's and its controller's listeners).

    Raises:
        RuntimeError: no such pair found in ``attempts`` tries.
    """
    return free_port_run(2, host, attempts)


def free_edge_port(metrics_offset: int = 100, host: str = "127.0.0.1",
                   attempts: int = 200) -> int:
    """A port p for an edge with p and p + ``metrics_offset`` (its ``/metrics`` listener,
    ``edge_metrics_port_offset``) both free now.

    Raises:
        RuntimeError: none found in ``attempts`` tries.
    """
    ports = listen_port_range()
    for _ in range(attempts):
        port = random.randrange(ports.start, ports.stop - metrics_offset)
        pair = (port, port + metrics_offset)
        if _handed_out.intersection(pair) or not all(_bindable(host, p) for p in pair):
            continue
        _handed_out.update(pair)
        return port
    raise RuntimeError(f"no free port p with p + {metrics_offset} free on {host}")
