"""The CA's corroboration round against perspectives that hang or are gone: stragglers
are not waited for once the outcome is decided, and a round that runs out of time counts
the silent ones as failed; a straggler that does answer keeps its connection for the next
round. Real TLS on loopback with certificates from a CA made here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.server.ca import load_or_create_issuer
from acmekit.server.mpic.certs import ensure_client_credentials, issue_perspective_credentials
from acmekit.server.mpic.perspective import server_context
from acmekit.server.mpic.quorum import Verdict
from acmekit.server.mpic.remote import Corroborator, Outcome, RemotePerspective, client_context
from acmekit.server.mpic.wire import PATH, CorroborationRequest, PerspectiveAnswer
from acmekit_testkit.ports import free_port
from acmekit_testkit.tcpstub import tcp_server

REQUEST = CorroborationRequest(
    ChallengeType.DNS_01, Identifier(IdentifierType.DNS, "a.test"), False, "t", "t.k",
    "https://ca.test/acct/1", ("acmekit",),
)  # fmt: skip


async def hung_perspectives(
    stack: AsyncExitStack, tmp_path: Path, names: list[tuple[str, str]]
) -> list[RemotePerspective]:
    """TLS servers with the perspectives' own certificates that never answer."""
    now = datetime.now(UTC)
    issuer = load_or_create_issuer(tmp_path / "ca", now)
    remotes = []
    for name, rir in names:
        files = issue_perspective_credentials(
            issuer, tmp_path / "ca" / "root.pem", tmp_path / name, name, ["127.0.0.1"], now
        )
        port = await stack.enter_async_context(tcp_server(ssl_context=server_context(files)))
        remotes.append(RemotePerspective(name, rir, f"https://127.0.0.1:{port}"))
    return remotes


async def answering_perspective(
    stack: AsyncExitStack, tmp_path: Path, name: str, rir: str, gate: asyncio.Event | None
) -> tuple[RemotePerspective, asyncio.Queue[tuple[str, int]]]:
    """A TLS server with the perspective's certificate that corroborates every request
    (after `gate` is set, when given); and the client address of each request as it
    comes."""
    issuer = load_or_create_issuer(tmp_path / "ca", datetime.now(UTC))
    files = issue_perspective_credentials(
        issuer, tmp_path / "ca" / "root.pem", tmp_path / name, name, ["127.0.0.1"],
        datetime.now(UTC),
    )  # fmt: skip
    peers: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.put_nowait(request.transport.get_extra_info("peername")[:2])
        if gate is not None:
            await gate.wait()
        return web.json_response(PerspectiveAnswer(name, rir, None, None).to_json())

    app = web.Application()
    app.router.add_post(PATH, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(files)).start()
    return RemotePerspective(name, rir, f"https://127.0.0.1:{port}"), peers


def corroborator(tmp_path: Path, remotes: list[RemotePerspective], timeout: float) -> Corroborator:
    issuer = load_or_create_issuer(tmp_path / "ca", datetime.now(UTC))
    cert, key = ensure_client_credentials(issuer, tmp_path / "ca", datetime.now(UTC))
    context = client_context(tmp_path / "ca" / "root.pem", cert, key)
    return Corroborator(tuple(remotes), context, timeout)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


async def test_two_gone_decide_at_once_and_the_straggler_is_cancelled(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    # A timeout far beyond pytest's: the round must end on the decision, not on time.
    hung = await hung_perspectives(stack, tmp_path, [("slow", "APNIC")])
    gone = [
        RemotePerspective(name, rir, f"https://127.0.0.1:{free_port()}")
        for name, rir in (("gone-1", "ARIN"), ("gone-2", "RIPE"))
    ]
    outcome = await corroborator(tmp_path, [*gone, *hung], timeout=3600).corroborate(REQUEST)
    assert outcome.verdict == Verdict.FAIL and outcome.quorum == "0/3"
    by_name = {r.name: r for r in outcome.results}
    assert by_name["slow"].outcome == Outcome.CANCELLED
    assert by_name["gone-1"].outcome == Outcome.FAILED
    assert by_name["gone-1"].detail.startswith("unreachable: ")


async def test_silent_perspectives_fail_when_the_round_runs_out(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    hung = await hung_perspectives(stack, tmp_path, [("s1", "ARIN"), ("s2", "RIPE")])
    outcome = await corroborator(tmp_path, hung, timeout=0.5).corroborate(REQUEST)
    assert outcome.verdict == Verdict.FAIL and outcome.quorum == "0/2"
    assert [(r.outcome, r.detail) for r in outcome.results] == [
        (Outcome.FAILED, "no answer in time"),
        (Outcome.FAILED, "no answer in time"),
    ]


async def test_a_straggler_that_answers_keeps_its_connection(
    tmp_path: Path, stack: AsyncExitStack
) -> None:
    # Two perspectives decide the round; the third answers only once let go, after the
    # round ended. Its connection goes back to the pool, and the next round reuses it
    # instead of paying a new client-authenticated handshake.
    gate = asyncio.Event()
    slow, slow_peers = await answering_perspective(stack, tmp_path, "slow", "APNIC", gate)
    fast = [
        (await answering_perspective(stack, tmp_path, name, rir, None))[0]
        for name, rir in (("fast-1", "ARIN"), ("fast-2", "RIPE"))
    ]
    ca = corroborator(tmp_path, [*fast, slow], timeout=60)
    first = await ca.corroborate(REQUEST)
    assert first.verdict == Verdict.PASS and first.quorum == "2/3"
    assert {r.name: r.outcome for r in first.results}["slow"] == Outcome.CANCELLED
    assert ca.kept("slow") == 0
    gate.set()
    async with asyncio.timeout(30):
        # Nothing to wait on: the straggler runs in the corroborator's background.
        while ca.kept("slow") == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    second = await ca.corroborate(REQUEST)
    assert second.verdict == Verdict.PASS
    async with asyncio.timeout(30):
        first_peer, second_peer = await slow_peers.get(), await slow_peers.get()
    assert first_peer == second_peer  # the same connection, both times
