"""A flood of made-up server names at an edge: once a registered domain is at its
on-demand limit (or the fleet at its limit per minute), further names are refused from
memory, without asking the operator's ask URL (a real HTTP server on loopback) or taking
the inventory's admission lock again, for as long as a refused name is remembered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import to_us
from acmekit.fleet.ondemand import OnDemand, OnDemandPolicy, Verdict
from acmekit_testkit.fleet_testca import FakeClock
from acmekit_testkit.sqlcount import counting

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
async def ask_url() -> AsyncIterator[tuple[str, list[str]]]:
    """The operator's ask URL: yes to every name, each question noted."""
    asked: list[str] = []

    async def ask(request: web.Request) -> web.Response:
        asked.append(request.query["domain"])
        return web.Response(status=200)

    app = web.Application()
    app.router.add_get("/ask", ask)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/ask", asked
    await runner.cleanup()


async def _flood(tmp_path: Path, policy: OnDemandPolicy, names: list[str]) -> tuple[OnDemand, int]:
    """Decide every name in turn; (the policy, the inventory's transactions meanwhile)."""
    clock = FakeClock(START)
    with counting() as count:
        inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
        on_demand = OnDemand(inventory, policy, lambda: to_us(clock.now()))
        before = count.transactions
        try:
            for name in names:
                await on_demand.decide(name)
        finally:
            await on_demand.close()
            inventory.close()
        return on_demand, count.transactions - before


async def test_names_of_a_domain_at_its_limit_cost_nothing_more(
    tmp_path: Path, ask_url: tuple[str, list[str]]
) -> None:
    url, asked = ask_url
    policy = OnDemandPolicy(patterns=("*.flood.test",), ask=url, per_domain=2)
    names = [f"r{i}.flood.test" for i in range(40)]
    on_demand, transactions = await _flood(tmp_path, policy, names)
    assert on_demand.verdicts[Verdict.ADDED] == 2
    assert on_demand.verdicts[Verdict.DOMAIN_LIMIT] == 38
    assert asked == names[:3]  # the third found the limit; the rest were not asked
    assert transactions == 3


async def test_names_past_the_limit_per_minute_cost_nothing_more(
    tmp_path: Path, ask_url: tuple[str, list[str]]
) -> None:
    url, asked = ask_url
    policy = OnDemandPolicy(ask=url, per_minute=2)
    names = [f"shop{i}.domain{i}.test" for i in range(40)]
    on_demand, transactions = await _flood(tmp_path, policy, names)
    assert on_demand.verdicts[Verdict.ADDED] == 2
    assert on_demand.verdicts[Verdict.RATE_LIMIT] == 38
    assert asked == names[:3]
    assert transactions == 3


async def test_a_name_refused_for_the_limit_per_minute_is_not_refused_for_longer(
    tmp_path: Path,
) -> None:
    """The fleet's limit per minute pauses every name for `rate_pause`: a real name that
    came in a flood is looked at again after that pause, not after `refusal_ttl`."""
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    policy = OnDemandPolicy(
        patterns=("*.one.test", "*.two.test"), per_minute=1, rate_pause=0.05, refusal_ttl=3600.0
    )
    on_demand = OnDemand(inventory, policy, lambda: to_us(clock.now()))
    try:
        assert await on_demand.decide("shop.one.test") == Verdict.ADDED
        assert await on_demand.decide("shop.two.test") == Verdict.RATE_LIMIT
        clock.advance(timedelta(minutes=2))  # room again under the limit per minute
        await asyncio.sleep(0.1)  # past the pause (monotonic time, as the memory keeps)
        on_demand.seen("shop.two.test")
        await on_demand.settle()
        assert on_demand.verdicts[Verdict.ADDED] == 2
    finally:
        await on_demand.close()
        inventory.close()
