"""The DNS work a CAA check can cause is bounded, however long the name.

RFC 8659 §3 has the climb go from the name up to its top-level domain, so a name of 115
labels means up to 115 questions; what is bounded is how many are in flight: a batch of
`CLIMB_BATCH` names through the stub (one socket), then the resolver one name at a time,
the climb ending at the first set found or the first failure; and, process-wide, the
checker's `in_flight` lookups. A silent resolver on loopback records every question and
the number of descriptors the process has open as each arrives.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dns.message
import uvloop

from acmekit.protocol.problems import AcmeError
from acmekit.server.caa import CLIMB_BATCH, CaaChecker
from acmekit.server.validation.resolve import STUB_ATTEMPT

US = "ca.test"


def long_name(i: int) -> str:
    """115 labels: the climb passes 115 names."""
    return f"x{i}." + "a." * 113 + "test"


class SilentCounter(asyncio.DatagramProtocol):
    """Never answers; keeps each question's name and source port, and the process's open
    descriptors when it arrived."""

    def __init__(self) -> None:
        self.questions: list[tuple[str, int]] = []
        self.descriptors: list[int] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.descriptors.append(len(os.listdir("/proc/self/fd")))
        query = dns.message.from_wire(data)
        self.questions.append((query.question[0].name.to_text(), addr[1]))


@asynccontextmanager
async def silent_counter() -> AsyncIterator[tuple[tuple[str, int], SilentCounter]]:
    loop = asyncio.get_running_loop()
    transport, counter = await loop.create_datagram_endpoint(
        SilentCounter, local_addr=("127.0.0.1", 0)
    )
    try:
        yield transport.get_extra_info("sockname")[:2], counter
    finally:
        transport.close()


def test_one_check_of_a_long_name_asks_one_batch_and_then_one_name_at_a_time() -> None:
    async def main() -> SilentCounter:
        async with silent_counter() as (at, counter):
            # Past the stub's wait, so that the resolver is asked too.
            caa = CaaChecker(at, (US,), timeout=STUB_ATTEMPT + 0.5)
            try:
                await caa.relevant_records(long_name(0))
            except AcmeError as exc:
                assert "timeout looking up CAA at x0." in exc.problem.detail
            return counter

    counter = uvloop.run(main())
    names = [name for name, _ in counter.questions]
    ports = {port for _, port in counter.questions}
    # The first batch through the stub, then the name itself through the resolver
    # (which may try again, on a socket of its own): not 115 names from 116 sockets.
    assert set(names) == {f"{'a.' * k}test." for k in range(113 - CLIMB_BATCH + 2, 114)} | {
        f"x0.{'a.' * 113}test."
    }
    assert len(ports) <= 3


def test_concurrent_checks_keep_the_checkers_lookups_in_flight_bounded() -> None:
    checks, in_flight = 40, 4

    async def main() -> tuple[int, SilentCounter]:
        async with silent_counter() as (at, counter):
            caa = CaaChecker(at, (US,), timeout=STUB_ATTEMPT + 0.5, in_flight=in_flight)
            before = len(os.listdir("/proc/self/fd"))
            lookups = (caa.relevant_records(long_name(i)) for i in range(checks))
            results = await asyncio.gather(*lookups, return_exceptions=True)
            assert all(isinstance(r, AcmeError) for r in results)
            return before, counter

    before, counter = uvloop.run(main())
    # Each lookup in flight holds about one socket (the resolver's retry may open its
    # next before the last is closed): never one per check, let alone per name.
    assert max(counter.descriptors) - before <= 2 * in_flight
