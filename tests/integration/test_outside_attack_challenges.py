"""One authorization, one attempt (RFC 8555 §7.1.6), against the CA as a process over
HTTPS on loopback: a client that answers a second challenge while the first is being
validated is refused, so a failure it was shown cannot turn into a success."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from acmekit.protocol.challenges import key_authorization
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.tiers import BACKEND_PARAMS

SLOW = 2.0  # seconds the http-01 target takes: longer than the CA's challenge_wait (1 s)


@pytest.fixture
async def slow_target() -> AsyncIterator[tuple[int, dict[str, str]]]:
    """An http-01 target on loopback that answers right, after SLOW seconds."""
    answers: dict[str, str] = {}

    async def serve(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW)
        return web.Response(text=answers.get(request.match_info["token"], ""))

    app = web.Application()
    app.router.add_get("/.well-known/acme-challenge/{token}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, answers
    await runner.cleanup()


@pytest.fixture(params=BACKEND_PARAMS)
def ca_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The CA's database, on each backend: the refusal is one conditional UPDATE."""
    with fresh_database(request.param, tmp_path, "ca.db") as url:
        yield url


async def test_a_second_challenge_of_an_authorization_is_refused(
    tmp_path: Path, dns: DnsServerHandle, slow_target: tuple[int, dict[str, str]], ca_db: str
) -> None:
    port, answers = slow_target
    kw = {"dns_port": dns.dns_port, "http01_port": port, "settings": {"db": ca_db}}
    with running_acmekit_server(tmp_path, **kw) as ca:  # type: ignore[arg-type]
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        flow = Flow(acme, Http01Responder(port=port))
        await flow.account()
        order = await flow.order("once.outside.test")
        authz_url = order.json()["authorizations"][0]
        authz = (await flow.get(authz_url)).json()
        by_type = {c["type"]: c for c in authz["challenges"]}
        http, dns01 = by_type["http-01"], by_type["dns-01"]
        answers[http["token"]] = key_authorization(http["token"], flow.key)

        first = await acme.post(http["url"], {}, flow.key, flow.kid)
        assert first.json()["status"] == "processing"
        # No TXT record: were it started, dns-01 would fail at once, the authorization
        # and order turning invalid, then valid again when http-01 passed.
        second = await acme.post(dns01["url"], {}, flow.key, flow.kid)
        assert (second.status, second.problem_type) == (400, "malformed"), second.body
        assert "http-01" in second.json()["detail"]

        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            doc = (await flow.get(authz_url)).json()
            seen.append(doc["status"])
            if doc["status"] != "pending":
                break
            await asyncio.sleep(0.1)
        assert seen[-1] == "valid" and "invalid" not in seen, seen
        statuses = {c["type"]: c["status"] for c in doc["challenges"]}
        assert statuses["http-01"] == "valid" and statuses["dns-01"] == "pending", statuses
        again = await acme.post(http["url"], {}, flow.key, flow.kid)
        assert again.status == 200 and again.json()["status"] == "valid"
        await acme.close()
