"""The client sends a request again after a 503 that carries Retry-After, waiting through
its injected clock: against the CA whose PostgreSQL is down (its outage answer), and
against a loopback server for the bounds (a long Retry-After, none at all, too many
503s, and a 429, none of which is retried)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import AiohttpTransport, Client
from acmekit.client.channel import UNAVAILABLE_MAX_WAIT, UNAVAILABLE_RETRIES
from acmekit.protocol.jose import parse_jws
from acmekit.protocol.problems import AcmeError
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.postgres_cluster import postgres_cluster


class WaitingClock:
    """Records every wait; the first one runs `during` (the outage ends meanwhile)."""

    def __init__(self, during: Callable[[], Awaitable[None]] | None = None) -> None:
        self.waits: list[float] = []
        self._during = during

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self._during is not None:
            during, self._during = self._during, None
            await during()


@pytest.mark.postgres
async def test_a_client_rides_out_the_cas_database_outage(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    with postgres_cluster() as cluster:
        settings = {"db": cluster.url, "nonce_scope": "database"}
        with running_acmekit_server(
            tmp_path, dns_port=dns.dns_port, settings=settings, verbose=False
        ) as ca:
            clock = WaitingClock(lambda: asyncio.to_thread(cluster.start))
            directory = f"{ca.base_url}/directory"
            key = ec.generate_private_key(ec.SECP256R1())
            async with Client(directory, key, ca_bundle=str(ca.root_path), clock=clock) as client:
                await client.directory()
                await asyncio.to_thread(cluster.stop)
                account = await client.register(contact=["mailto:ops@outage.test"])
            log = ca.log.read_text()
    assert account.status == "valid"
    assert clock.waits and all(0 < w <= UNAVAILABLE_MAX_WAIT for w in clock.waits)
    assert len(clock.waits) <= UNAVAILABLE_RETRIES
    assert "Traceback" not in log


# A loopback server whose answers are scripted: (status, Retry-After or None, problem type).
Script = list[tuple[int, str | None, str]]


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, Script, list[str]]]:
    """The server's directory URL, its script for newAccount, and the nonces it was sent."""
    script: Script = []
    seen: list[str] = []
    counter = iter(range(1, 10**6))
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def headers() -> dict[str, str]:
        return {"Replay-Nonce": f"nonce-{next(counter)}", "Cache-Control": "no-store"}

    async def directory(_: web.Request) -> web.Response:
        doc = {name: f"{base}/{name}" for name in ("newOrder", "revokeCert", "keyChange")}
        doc |= {"newNonce": f"{base}/nonce", "newAccount": f"{base}/account"}
        return web.json_response(doc, headers=headers())

    async def nonce(_: web.Request) -> web.Response:
        return web.Response(status=200, headers=headers())

    async def account(request: web.Request) -> web.Response:
        seen.append(parse_jws(await request.read()).protected["nonce"])
        if script:
            status, after, kind = script.pop(0)
            doc = {"type": f"urn:ietf:params:acme:error:{kind}", "detail": "scripted"}
            extra = {} if after is None else {"Retry-After": after}
            body = json.dumps(doc).encode()
            return web.Response(
                status=status, body=body, content_type="application/problem+json",
                headers={**headers(), **extra},
            )  # fmt: skip
        doc = {"status": "valid", "orders": f"{base}/orders"}
        return web.json_response(
            doc, status=201, headers={**headers(), "Location": f"{base}/acct/1"}
        )

    app = web.Application()
    app.router.add_get("/directory", directory)
    app.router.add_route("*", "/nonce", nonce)
    app.router.add_post("/account", account)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"{base}/directory", script, seen
    finally:
        await runner.cleanup()


async def _register(directory: str, clock: WaitingClock) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    async with (
        AiohttpTransport() as transport,
        Client(directory, key, transport=transport, clock=clock) as client,
    ):
        await client.register()


async def test_a_503_with_retry_after_is_sent_again_signed_anew(
    scripted: tuple[str, Script, list[str]],
) -> None:
    directory, script, seen = scripted
    script += [(503, "7", "serverInternal"), (503, "3", "serverInternal")]
    clock = WaitingClock()
    await _register(directory, clock)
    assert clock.waits == [7.0, 3.0]
    assert len(seen) == 3 and len(set(seen)) == 3  # a fresh nonce each time


@pytest.mark.parametrize(
    "answers",
    [
        [(503, str(int(UNAVAILABLE_MAX_WAIT) + 1), "serverInternal")],  # too long to wait
        [(503, None, "serverInternal")],  # no Retry-After: the caller decides
        [(429, "5", "rateLimited")],  # the CA's verdict, not an outage
    ],
)
async def test_other_errors_are_not_sent_again(
    scripted: tuple[str, Script, list[str]], answers: Script
) -> None:
    directory, script, seen = scripted
    script += answers
    clock = WaitingClock()
    with pytest.raises(AcmeError) as caught:
        await _register(directory, clock)
    assert clock.waits == [] and len(seen) == 1
    assert caught.value.problem.status == answers[0][0]


async def test_503s_are_sent_again_only_a_few_times(
    scripted: tuple[str, Script, list[str]],
) -> None:
    directory, script, seen = scripted
    script += [(503, "1", "serverInternal")] * (UNAVAILABLE_RETRIES + 1)
    clock = WaitingClock()
    with pytest.raises(AcmeError) as caught:
        await _register(directory, clock)
    assert clock.waits == [1.0] * UNAVAILABLE_RETRIES
    assert len(seen) == UNAVAILABLE_RETRIES + 1
    assert caught.value.problem.retry_after == 1
