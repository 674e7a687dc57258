"""Ports chosen for test servers are out of the kernel's way and out of each other's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from acmekit_testkit.ports import _ephemeral_start, free_port, free_tcp_udp_port


def test_a_free_port_is_below_the_ephemeral_range() -> None:
    # Outgoing connections take their source ports from the ephemeral range: a port
    # chosen there can be taken by any client before the server binds it.
    top = _ephemeral_start()
    ports = [free_port() for _ in range(20)] + [free_tcp_udp_port() for _ in range(5)]
    assert all(p < top for p in ports), ports
    assert len(set(ports)) == len(ports)  # not handed out again at once


def test_a_free_port_binds_for_what_was_asked() -> None:
    port = free_tcp_udp_port()
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))
    udp = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", udp))


def test_a_port_in_use_is_skipped() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        taken = held.getsockname()[1]
        assert taken not in {free_port() for _ in range(50)}


CHOOSE = "from acmekit_testkit.ports import free_port; print(*(free_port() for _ in range(200)))"


def test_parallel_workers_never_choose_the_same_port() -> None:
    chosen = []
    for worker in ("gw0", "gw1", "gw2"):
        env = {**os.environ, "PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": "3"}
        out = subprocess.run(
            [sys.executable, "-c", CHOOSE], env=env, capture_output=True, text=True, check=True
        )
        chosen.append(set(map(int, out.stdout.split())))
    assert not chosen[0] & chosen[1] and not chosen[0] & chosen[2] and not chosen[1] & chosen[2]
