"""Issuance limits hold against orders opened before any of them is finalized: the
newOrder check only warns early (it takes nothing), so the limit is taken at finalize,
one atomic take per bucket, and an order over it stays `ready` with a 429."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from acmekit.server.config import Limit, RateLimits, ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def limited_ca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    limits = RateLimits(
        duplicate_certificates=Limit(2, timedelta(days=7)),
        certificates_per_domain=Limit(3, timedelta(days=7)),
    )
    assembly = assemble(replace(ca_config, rate_limits=limits), now=lambda: NOW)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _ready_orders(flow: Flow, names: list[tuple[str, ...]]) -> list[str]:
    if not flow.kid:
        await flow.account()
    urls = []
    for group in names:
        resp = await flow.order(*group)
        assert resp.status == 201, resp.body
        urls.append(resp.header("location") or "")
        await flow.solve(resp.json())
    return urls


async def test_orders_opened_together_cannot_pass_the_duplicate_limit(
    limited_ca: Assembly, responder: Http01Responder
) -> None:
    flow = Flow(RawAcme(limited_ca.app), responder)
    names = ("dup.race.example.com", "www.dup.race.example.com")
    urls = await _ready_orders(flow, [names] * 4)
    statuses = [(await flow.finalize(url, names)).status for url in urls]
    assert statuses == [200, 200, 429, 429]
    left = (await flow.get(urls[-1])).json()
    assert left["status"] == "ready"


async def test_orders_opened_together_cannot_pass_the_domain_limit(
    limited_ca: Assembly, responder: Http01Responder
) -> None:
    flow = Flow(RawAcme(limited_ca.app), responder)
    groups = [(f"h{i}.race.example.net",) for i in range(5)]
    urls = await _ready_orders(flow, groups)
    statuses = [(await flow.finalize(u, g)).status for u, g in zip(urls, groups, strict=True)]
    assert statuses == [200, 200, 200, 429, 429]
