"""Ports for our own listeners: below the ephemeral range, never handed out twice."""

from __future__ import annotations

import socket

import pytest

from devstack import ports
from devstack.ports import free_edge_port, free_port, free_port_run, listen_port_range


def test_listener_ports_are_picked_below_the_ephemeral_range() -> None:
    # The kernel gives a connecting client's local port from the ephemeral range: a port
    # picked there could be taken by a client of a node that is down, by a self-connect.
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports = listen_port_range()
    assert ports.stop <= low
    for port in (free_port(), free_port_run(6) + 5, free_edge_port() + 100):
        assert ports.start <= port < low


def test_a_port_is_handed_out_once_per_process() -> None:
    picked = [free_port() for _ in range(300)]
    picked += [free_port_run(6) + i for _ in range(20) for i in range(6)]
    assert len(picked) == len(set(picked))


def test_a_bound_port_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    # A window of 60 ports, 50 of them held by listeners: the 10 picks are the other 10.
    start = free_port_run(60)
    window = range(start, start + 60)
    ports._handed_out.difference_update(window)
    monkeypatch.setattr(ports, "listen_port_range", lambda: window)
    held = []
    try:
        for port in window[:50]:
            sock = socket.socket()
            sock.bind(("127.0.0.1", port))
            sock.listen()
            held.append(sock)
        picked = {free_port(attempts=2000) for _ in range(10)}
        assert picked == set(window[50:])
    finally:
        for sock in held:
            sock.close()
