"""No DNS socket outlives its lookup under uvloop (the CA's loop), timeout or cancel.

A resolver that never answers CAA made every check time out; each timeout that cancelled
a lookup while the loop was still handing over its new socket left that socket open for
good under uvloop (asyncio closes it), until the CA ran out of descriptors. Here the
process's open descriptors (/proc/self/fd) are counted before and after: many concurrent
checks of long names against a silent resolver on loopback, and lookups cancelled at each
step of opening their socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dns.rdatatype
import uvloop

from acmekit.dnsbackend import CLOSING_BACKEND
from acmekit.protocol.problems import AcmeError
from acmekit.server.caa import CaaChecker
from acmekit.server.validation.dnssec import DnssecMode, validation_resolver
from acmekit.server.validation.resolve import STUB_ATTEMPT
from acmekit.server.validation.stub import StubClient, decode_caa
from acmekit_testkit.descriptors import Descriptors, cancelled_after, open_descriptors, settle
from acmekit_testkit.stubdns import stub_dns

US = "ca.test"
CHECKS = 100
STEPS = 12  # loop iterations at which a lookup is cancelled: 0 .. past its socket's opening


def long_name(i: int) -> str:
    """115 labels, as the attack's names: each check climbs through 115 names."""
    return f"x{i}." + "a." * 113 + "test"


def opened_under_uvloop(
    main: Callable[[], Awaitable[tuple[Descriptors, Descriptors]]],
) -> Descriptors:
    """The descriptors `main` (run on uvloop) left open: open at its end, not at its start
    (others of the process, closed meanwhile, do not count)."""

    async def run() -> tuple[Descriptors, Descriptors]:
        return await main()

    before, after = uvloop.run(run())
    return after - before


def test_concurrent_caa_checks_against_a_silent_resolver_leave_no_socket_open() -> None:
    async def main() -> tuple[Descriptors, Descriptors]:
        async with stub_dns(None) as at:
            # Past the stub's wait, so that dnspython's resolver is asked too.
            caa = CaaChecker(at, (US,), timeout=STUB_ATTEMPT + 0.2)
            before = open_descriptors()
            # Each check cancelled at another step of its lookups' opening their sockets,
            cancelled = (
                cancelled_after(i, caa.relevant_records(long_name(i))) for i in range(CHECKS)
            )
            await asyncio.gather(*cancelled)
            # and as many timing out.
            checks = (caa.relevant_records(long_name(i)) for i in range(CHECKS))
            results = await asyncio.gather(*checks, return_exceptions=True)
            await settle()
            assert all(isinstance(r, AcmeError) for r in results)
            return before, open_descriptors()

    assert opened_under_uvloop(main) == frozenset()


def test_stub_questions_cancelled_while_opening_their_socket_leave_none_open() -> None:
    async def main() -> tuple[Descriptors, Descriptors]:
        async with stub_dns(None) as at:
            stub = StubClient(at)
            names = [f"n{i}.test." for i in range(20)]  # more than one socket carries
            before = open_descriptors()
            for steps in range(STEPS):
                asking = asyncio.ensure_future(
                    stub.ask_all(names, dns.rdatatype.CAA, decode_caa, 5.0)
                )
                for _ in range(steps):
                    await asyncio.sleep(0)
                asking.cancel()
                await asyncio.gather(asking, return_exceptions=True)
            await settle()
            return before, open_descriptors()

    assert opened_under_uvloop(main) == frozenset()


def test_resolver_lookups_cancelled_while_opening_their_socket_leave_none_open() -> None:
    async def main() -> tuple[Descriptors, Descriptors]:
        async with stub_dns(None) as at:
            resolver = validation_resolver(at, DnssecMode.OFF)
            before = open_descriptors()
            for steps in range(STEPS):
                asking = asyncio.ensure_future(
                    resolver.resolve(
                        "n.test.", dns.rdatatype.CAA, lifetime=5.0, backend=CLOSING_BACKEND
                    )
                )
                for _ in range(steps):
                    await asyncio.sleep(0)
                asking.cancel()
                await asyncio.gather(asking, return_exceptions=True)
            await settle()
            return before, open_descriptors()

    assert opened_under_uvloop(main) == frozenset()
