"""Local TCP ports: whether one is taken, and finding free ones for a stack of our own."""

from __future__ import annotations

import socket


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts TCP connections on ``host:port`` (0.5 s connect timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it; another program may take it later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int, host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A port p with p, p + 1, ..., p + count − 1 all free (free now; not reserved).

    A local cluster of N Kafka nodes needs 2·N in a row: each node's client
    port and, next to it, its controller's.

    Raises:
        RuntimeError: no such run found in ``attempts`` tries.
    """
    for _ in range(attempts):
        port = free_port(host)
        if port + count - 1 > 65535:
            continue
        try:
            for offset in range(1, count):
                with socket.socket() as sock:
                    # As the servers bind (Kafka, uvicorn and HAProxy set SO_REUSEADDR): a
                    # port that only closed connections in TIME_WAIT still use is free.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((host, port + offset))
        except OSError:
            continue
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
    for _ in range(attempts):
        port = free_port(host)
        if port + metrics_offset < 65536 and not port_in_use(host, port + metrics_offset):
            return port
    raise RuntimeError(f"no free port p with p + {metrics_offset} free on {host}")
