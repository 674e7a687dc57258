"""new_accounts_per_ip counts an IPv6 client by its /64 (one subscriber's usual
allocation: a client holding one has 2^64 addresses to spread accounts over), and an
IPv4 client seen on a dual-stack listener (`::ffff:a.b.c.d`) as that IPv4 address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from acmekit.hostport import client_key
from acmekit.server.config import Limit, RateLimits, ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, Resp

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class From(RawAcme):
    """The in-process driver with the ASGI scope's `client` set, as a listener sets it."""

    def __init__(self, app: Any, ip: str) -> None:
        super().__init__(app)
        self.ip = ip

    async def request(
        self, method: str, url: str, body: bytes = b"", content_type: str | None = None
    ) -> Resp:
        app = self.app

        async def with_client(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await app({**scope, "client": (self.ip, 40000)}, receive, send)

        self.app = with_client  # type: ignore[assignment]
        try:
            return await super().request(method, url, body, content_type)
        finally:
            self.app = app


@pytest.fixture
async def limited_ca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    limits = RateLimits(new_accounts_per_ip=Limit(2, timedelta(hours=3)))
    assembly = assemble(replace(ca_config, rate_limits=limits), now=lambda: NOW)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def test_addresses_of_one_ipv6_64_share_a_bucket(
    limited_ca: Assembly, responder: Http01Responder
) -> None:
    statuses = []
    for host in range(1, 5):
        flow = Flow(From(limited_ca.app, f"2001:db8:1:2::{host:x}"), responder)
        statuses.append((await flow.account()).status)
    assert statuses == [201, 201, 429, 429]
    other = Flow(From(limited_ca.app, "2001:db8:1:3::1"), responder)
    assert (await other.account()).status == 201


async def test_ipv4_clients_on_a_dual_stack_listener_do_not_share_one_bucket(
    limited_ca: Assembly, responder: Http01Responder
) -> None:
    for n in range(1, 5):
        flow = Flow(From(limited_ca.app, f"::ffff:198.51.100.{n}"), responder)
        assert (await flow.account()).status == 201
    same = [
        Flow(From(limited_ca.app, a), responder) for a in ("::ffff:198.51.100.1", "198.51.100.1")
    ]
    assert [(await f.account()).status for f in same] == [201, 429]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("testclient", "testclient"),
    ],
)
def test_client_keys(address: str, key: str) -> None:
    assert client_key(address) == key
