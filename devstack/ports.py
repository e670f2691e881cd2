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


def free_port_pair(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port p with p and p + 1 both free (a broker's and its controller's listeners).

    Raises:
        RuntimeError: no such pair found in ``attempts`` tries.
    """
    for _ in range(attempts):
        port = free_port(host)
        try:
            with socket.socket() as sock:
                sock.bind((host, port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no pair of free ports found")
