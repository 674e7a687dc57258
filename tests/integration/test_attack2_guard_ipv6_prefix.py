"""The per-client bound of guarded listeners (`acmekit.webguard`: the MPIC perspective,
the DNS server's API, the fleet's sites) and of `acmekit dns`'s TCP connections counts
an IPv6 client by its /64.

Counted by its full address, one client holding a /64 (what an ISP or a cloud gives one
subscriber, RFC 6177) had 2^64 shares of 64 connections: it could hold a perspective's
unfinished handshakes, or a fleet's slow request heads, beyond any bound, until the
process ran out of file descriptors and the CA could not reach it.

Real sockets in a network namespace of its own, whose loopback holds a /48 (AnyIP), so
that connections come from many source addresses (IPV6_FREEBIND).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from acmekit_testkit.anyip import run_anyip_driver

DRIVER = textwrap.dedent(
    """
    import asyncio, json, socket
    from acmekit_testkit.anyip import connect_from
    from aiohttp import web
    from acmekit.dns.handler import DnsHandler
    from acmekit.dns.server import DnsListener
    from acmekit.dns.store import RecordStore
    from acmekit.webguard import ClientLimits, GuardedSite

    def still_open(s):
        try:
            return s.recv(1) != b""  # b"": closed by the server
        except BlockingIOError:
            return True  # nothing to read: open
        except OSError:
            return False  # reset

    async def held(port):
        one = [await connect_from(f"2001:db8:1::{0x100 + i:x}", port) for i in range(12)]
        other = [await connect_from(f"2001:db8:1:1::{0x100 + i:x}", port) for i in range(4)]
        await asyncio.sleep(1.0)
        found = {"one": sum(map(still_open, one)), "other": sum(map(still_open, other))}
        for s in one + other:
            s.close()
        return found

    async def main():
        runner = web.AppRunner(web.Application())
        await runner.setup()
        limits = ClientLimits(head_timeout=60, max_per_client=4)
        site = GuardedSite(runner, "2001:db8:1::1", 0, limits=limits)
        await site.start()
        http = await held(site._server.sockets[0].getsockname()[1])
        await runner.cleanup()
        dns = DnsListener(DnsHandler(RecordStore(["a.test"])), idle_timeout=60, max_per_client=4)
        port = await dns.start("2001:db8:1::1", 0)
        tcp = await held(port)
        await dns.close()
        print(json.dumps({"http": http, "dns": tcp}))

    asyncio.run(main())
    """
)


def test_one_ipv6_64_holds_one_share(tmp_path: Path) -> None:
    found = run_anyip_driver(DRIVER, tmp_path)
    # Twelve addresses of one /64 hold its four places; another /64 has its own four.
    share = {"one": 4, "other": 4}
    assert found == {"http": share, "dns": share}, found
