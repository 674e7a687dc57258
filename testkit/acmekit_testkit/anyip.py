"""Many IPv6 source addresses on one machine: a network namespace whose loopback holds
the /48 `2001:db8:1::/48` (AnyIP: a local route for the whole prefix), and a driver
script run inside it that connects from any address of it (IPV6_FREEBIND). For tests of
per-client bounds that must count an IPv6 client by its /64.

    found = run_anyip_driver(DRIVER, tmp_path)   # the driver's last line, as JSON

A driver imports `connect_from` from here to open its connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

from acmekit_testkit.netns import network_namespace

PREFIX = "2001:db8:1::/48"
SERVER = "2001:db8:1::1"  # the address the driver's listeners bind
IPV6_FREEBIND = 78  # linux/in6.h


async def connect_from(source: str, port: int) -> socket.socket:
    """A TCP connection from `source` (any address of PREFIX) to SERVER:port."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    s.bind((source, 0))
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, (SERVER, port))
    return s


def run_anyip_driver(driver_source: str, tmp_path: Path) -> Any:
    """Run `driver_source` with this interpreter in a new namespace holding PREFIX on its
    loopback; returns its last line of output, parsed as JSON."""
    driver = tmp_path / "anyip_driver.py"
    driver.write_text(driver_source)
    with network_namespace() as ns:
        for argv in (
            ["ip", "-6", "addr", "add", f"{SERVER}/48", "dev", "lo"],
            ["ip", "-6", "route", "add", "local", PREFIX, "dev", "lo"],
        ):
            done = ns.run(argv, capture_output=True)
            assert done.returncode == 0, done.stderr
        done = ns.run([sys.executable, str(driver)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])
