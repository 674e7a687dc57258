"""Test hosts: network namespaces joined by veth links, for tests that need machines
that see different networks (the CA and its remote validation perspectives).

    with linked_hosts(4) as net:
        net.hub.popen([...])                  # the CA's host
        net.spokes[0].ns.popen([...])         # a perspective's host, at net.spokes[0].address
        # the hub reaches spoke i at 10.R.i.2 and spoke i reaches the hub at 10.R.i.1

Each spoke has a point-to-point link (/30) to the hub only: spokes cannot reach each
other, nor anything but their own loopback and the hub. Namespaces come from
`netns.network_namespace` (random names, deleted at the end, and their veth ends with
them); the interface names carry this process's PID so parallel runs do not collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from acmekit_testkit.netns import NetNs, _ip, network_namespace


@dataclass(frozen=True)
class Spoke:
    ns: NetNs
    address: str  # the spoke's address on its link to the hub
    hub_address: str  # the hub's address on that link


@dataclass(frozen=True)
class LinkedHosts:
    hub: NetNs
    spokes: tuple[Spoke, ...]


@contextmanager
def linked_hosts(count: int, prefix: str = "mpic") -> Iterator[LinkedHosts]:
    """A hub namespace and `count` spoke namespaces, each linked to the hub."""
    # A random second octet in 10/8: addresses that only exist inside these namespaces.
    net = 64 + secrets.randbelow(128)
    tag = f"{os.getpid() % 100000}"
    with ExitStack() as stack:
        hub = stack.enter_context(network_namespace(f"{prefix}-hub"))
        spokes = []
        for i in range(count):
            ns = stack.enter_context(network_namespace(f"{prefix}-p{i}"))
            hub_end, spoke_end = f"h{tag}x{i}", f"s{tag}x{i}"
            _ip("link", "add", hub_end, "netns", hub.name, "type", "veth",
                "peer", "name", spoke_end, "netns", ns.name)  # fmt: skip
            hub_ip, spoke_ip = f"10.{net}.{i}.1", f"10.{net}.{i}.2"
            _ip("-n", hub.name, "addr", "add", f"{hub_ip}/30", "dev", hub_end)
            _ip("-n", hub.name, "link", "set", hub_end, "up")
            _ip("-n", ns.name, "addr", "add", f"{spoke_ip}/30", "dev", spoke_end)
            _ip("-n", ns.name, "link", "set", spoke_end, "up")
            spokes.append(Spoke(ns, spoke_ip, hub_ip))
        yield LinkedHosts(hub, tuple(spokes))


__all__ = ["LinkedHosts", "Spoke", "linked_hosts"]
