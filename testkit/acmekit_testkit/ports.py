"""Free loopback ports for tests that run in parallel.

A port is chosen free and bound later, by a server the test starts. Two things could take
it in between, and each once failed a run:
- the kernel hands out source ports for outgoing connections and for unbound UDP
  sockets (every client a test runs) from its ephemeral range, which is also where
  binding port 0 picks from;
- another test process choosing at the same moment.
So ports come from below the ephemeral range, and each pytest-xdist worker takes them
from a slice of its own, in turn, so a port is not handed out again soon after it was
released (a server's old connections may still hold it in TIME_WAIT).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOWEST = 20_000  # below: the defaults of the machine's services, ours (14000, 14080) and the peers'
EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _slice() -> range:
    """This process's ports: its worker's share of those below the ephemeral range."""
    top = _ephemeral_start()
    if top - LOWEST < 1_000:
        return range(0)  # no room below the range: let the kernel choose
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    if not worker:  # not a worker: a benchmark or a test run alone; start apart by PID
        workers, index = 8, os.getpid() % 8
    size = (top - LOWEST) // max(workers, 1)
    start = LOWEST + size * (index % max(workers, 1))
    return range(start, start + size)


_ports = _slice()
_next = 0


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _kernel_choice() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _candidates() -> Iterator[int]:
    """This process's slice in turn, once round; with no slice, ports the kernel picks."""
    global _next
    if not _ports:
        yield from (_kernel_choice() for _ in range(50))
        return
    for _ in range(len(_ports)):
        _next += 1
        yield _ports[(_next - 1) % len(_ports)]


def _take(kinds: tuple[int, ...]) -> int:
    for port in _candidates():
        if _bindable(port, kinds):
            return port
    raise RuntimeError(f"no free port for {kinds} in {_ports}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now for `kind` (TCP by default)."""
    return _take((kind,))


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP, as a DNS server needs."""
    return _take((socket.SOCK_STREAM, socket.SOCK_DGRAM))
