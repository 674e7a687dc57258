"""One subscriber's validations must not crowd the CA out of its own perspectives.

A perspective (`acmekit server perspective`) serves each client address at most 64
connections, counted from TCP's accept so that unauthenticated handshakes are bounded.
The CA asks every perspective over one connection per request in flight, so a
subscriber whose target answers the perspectives slowly (a server that holds the
connection until the validation's timeout, answered to the primary as it should be,
or not at all) keeps 64 of the CA's connections to each perspective busy with a few
dozen answered challenges, and every further connection the CA opened was refused
before its handshake: other subscribers' validations failed their corroboration and
their authorizations became invalid. A connection that completed its handshake with the
CA's own client certificate no longer counts against its address's bound.

Real perspective processes on loopback, the CA's real `Corroborator`, real TLS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.server.mpic.certs import client_paths
from acmekit.server.mpic.quorum import Verdict
from acmekit.server.mpic.remote import Corroborator, RemotePerspective, client_context
from acmekit.server.mpic.wire import CorroborationRequest
from acmekit.webguard import MAX_PER_CLIENT
from acmekit_testkit.perspectives import PerspectiveHandle, running_perspective
from acmekit_testkit.ports import free_port

TARGET = Identifier(IdentifierType.IP, "127.0.0.1")
CROWD = MAX_PER_CLIENT + 16


@pytest.fixture
async def holder() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """An http-01 target that accepts and never answers (as a validation target may);
    the event is set once both perspectives' full shares are held."""
    held: list[asyncio.StreamWriter] = []
    full = asyncio.Event()

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if len(held) >= 2 * MAX_PER_CLIENT:
            full.set()
        await asyncio.sleep(60)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], full
    for w in held:
        w.close()
    server.close()


@pytest.fixture
def perspectives(
    tmp_path: Path, holder: tuple[int, asyncio.Event]
) -> Iterator[list[PerspectiveHandle]]:
    port, _ = holder
    ca_state = tmp_path / "ca"
    with ExitStack() as stack:
        found = [
            stack.enter_context(
                running_perspective(
                    tmp_path, ca_state, name, rir, dns_port=free_port(), http01_port=port
                )
            )
            for name, rir in (("p1", "ARIN"), ("p2", "RIPE"))
        ]
        yield found


def _request(validate: bool) -> CorroborationRequest:
    return CorroborationRequest(
        type=ChallengeType.HTTP_01,
        identifier=TARGET,
        wildcard=False,
        token="t" * 43,
        key_authorization="t" * 43 + ".x",
        account_uri="https://ca.test/acme/acct/attacker",
        caa_identities=None,
        validate=validate,
    )


async def test_a_crowd_of_slow_validations_does_not_fail_another_subscribers(
    tmp_path: Path,
    holder: tuple[int, asyncio.Event],
    perspectives: list[PerspectiveHandle],
) -> None:
    _, full = holder
    cert, key = client_paths(tmp_path / "ca")
    ctx = client_context(tmp_path / "ca" / "root.pem", cert, key)
    remotes = tuple(RemotePerspective(p.name, p.rir, p.url) for p in perspectives)
    corroborator = Corroborator(remotes, ctx, timeout=15.0)
    crowd = [asyncio.ensure_future(corroborator.corroborate(_request(True))) for _ in range(CROWD)]
    try:
        # Both perspectives are validating the crowd's requests against the silent target.
        await asyncio.wait_for(full.wait(), 30)
        # Another subscriber's check (CAA only, an IP identifier: nothing to look up)
        # passes at once on each perspective, if the perspective takes the request.
        other = await corroborator.corroborate(_request(False))
        assert other.verdict == Verdict.PASS, other.problem_detail()
    finally:
        for task in crowd:
            task.cancel()
        await asyncio.gather(*crowd, return_exceptions=True)
