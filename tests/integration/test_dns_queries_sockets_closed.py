"""No socket outlives a cancelled dnspython query outside the CA, under uvloop.

uvloop (0.23) does not close a socket whose opening was cancelled while the loop was
still handing it over (asyncio does). The CA's validation lookups were fixed for that
(`test_caa_sockets_closed.py`); here the same is shown for the other dnspython queries:
the DNS server's NOTIFYs and status queries, and the client's dns-01 lookups (UDP, TCP)
and RFC 2136 UPDATEs. Each is cancelled at every step of opening its socket against a
server on loopback that answers nothing, and the process's open descriptors
(/proc/self/fd) are counted before and after. uvloop leaked only UDP sockets: eight in
each UDP test with dnspython's own backend. It closes a TCP connection whose opening was
cancelled; the TCP tests keep that so whichever backend the queries use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Awaitable, Callable

import dns.name
import uvloop

from acmekit.client.solvers.dnslookup import query
from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider
from acmekit.dns.notify import Notifier, Secondary, _soa_serial
from acmekit.dns.store import RecordStore
from acmekit_testkit.descriptors import cancelled_after, open_descriptors, settle
from acmekit_testkit.stubdns import stub_dns
from acmekit_testkit.tcpstub import tcp_server

STEPS = 12  # loop turns after which a query is cancelled: 0 .. past its socket's opening
ROUNDS = 4  # each step this many times, so that a leak is not down to one lucky turn
SECRET = base64.b64encode(b"update key of the acme clients!!").decode()
ZONE = dns.name.from_text("x.test.")

Asking = Callable[[], Awaitable[object]]


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the question, answer nothing, close: a cancellation that Python 3.11's
    `asyncio.wait_for` loses (CPython gh-86296) then ends the query at once, not at its
    5 s timeout."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        length = int.from_bytes(await reader.readexactly(2), "big")
        await reader.readexactly(length)


async def cancelled_at_each_step(ask: Asking) -> None:
    """`ask()` cancelled after 0, 1, .. STEPS - 1 turns of the loop, ROUNDS times each."""
    for _ in range(ROUNDS):
        for turns in range(STEPS):
            await cancelled_after(turns, ask())


def left_open_under_uvloop(ask: Callable[[str, int], Asking], tcp: bool = False) -> int:
    """How many descriptors the queries `ask(host, port)` makes, each cancelled at every
    step of its opening, leave open, with a server at `port` that answers nothing (over
    TCP with `tcp`)."""

    async def main() -> int:
        async with stub_dns(None) as (host, udp_port), tcp_server(hang_up) as tcp_port:
            before = open_descriptors()
            await cancelled_at_each_step(ask(host, tcp_port if tcp else udp_port))
            await settle()
            return len(open_descriptors() - before)

    return uvloop.run(main())


def test_client_lookups_over_udp() -> None:
    assert left_open_under_uvloop(lambda h, p: lambda: query((h, p), "x.test.", "TXT")) == 0


def test_client_lookups_over_tcp() -> None:
    def ask(host: str, port: int) -> Asking:
        return lambda: query((host, port), "x.test.", "SOA", tcp=True)

    assert left_open_under_uvloop(ask, tcp=True) == 0


def test_rfc2136_updates() -> None:
    def ask(host: str, port: int) -> Asking:
        provider = Rfc2136DnsProvider(host, port, "upd", SECRET, zone="x.test")
        return lambda: provider.add_txt("_acme-challenge.x.test", "token")

    assert left_open_under_uvloop(ask, tcp=True) == 0


def test_notify() -> None:
    def ask(host: str, port: int) -> Asking:
        store = RecordStore([ZONE])
        notifier = Notifier(store, [(host, port)])
        return lambda: notifier._notify(notifier.secondaries[0], ZONE)

    assert left_open_under_uvloop(ask) == 0


def test_secondary_status() -> None:
    def ask(host: str, port: int) -> Asking:
        return lambda: _soa_serial(Secondary(host, port), ZONE)

    assert left_open_under_uvloop(ask) == 0
