"""An account's order list (RFC 8555 §7.1.2.1) in pages of 100, newest first, each
linking the next: an account with hundreds of orders cannot make one cheap request
cost the CA a read and a rendering of all of them. Orders known to be invalid (expired
before issuance) are left out; another account's pages are refused."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from acmekit.server.authority import ORDERS_PAGE_SIZE
from acmekit.server.config import RateLimits, ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme

_NEXT = re.compile(r'<([^>]+)>;rel="next"')


@dataclass
class Clock:
    at: datetime

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def unlimited(ca_config: ServerConfig, clock: Clock) -> AsyncIterator[Assembly]:
    assembly = assemble(replace(ca_config, rate_limits=RateLimits(enabled=False)), clock.now)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _pages(flow: Flow) -> list[list[str]]:
    pages, url = [], flow.kid + "/orders"
    while url:
        resp = await flow.get(url)
        assert resp.status == 200, resp.body
        pages.append(resp.json()["orders"])
        found = [_NEXT.match(v) for v in resp.headers.get("link", [])]
        url = next((m[1] for m in found if m), "")
    return pages


async def test_the_list_comes_in_pages_newest_first(
    unlimited: Assembly, responder: Http01Responder, clock: Clock
) -> None:
    flow = Flow(RawAcme(unlimited.app), responder)
    await flow.account()
    made = []
    for n in range(2 * ORDERS_PAGE_SIZE + 30):
        clock.at += timedelta(milliseconds=n % 3)  # some share a creation time
        resp = await flow.order(f"p{n}.pages.test")
        assert resp.status == 201, resp.body
        made.append(resp.header("location"))
    pages = await _pages(flow)
    assert [len(p) for p in pages] == [ORDERS_PAGE_SIZE, ORDERS_PAGE_SIZE, 30]
    listed = [url for page in pages for url in page]
    assert sorted(listed) == sorted(made) and len(set(listed)) == len(made)
    # newest first: the last made is first, the first made last
    assert listed[0] == made[-1] and listed[-1] == made[0]

    other = Flow(RawAcme(unlimited.app), responder)
    await other.account()
    second_page = (await flow.get(flow.kid + "/orders")).headers.get("link", [])
    url = next(m[1] for m in (_NEXT.match(v) for v in second_page) if m)
    refused = await other.get(url)
    assert refused.status == 403 and refused.problem_type == "unauthorized"
    odd = await flow.get(url.replace("~", "~x"))
    assert odd.status == 400 and odd.problem_type == "malformed"


async def test_expired_orders_are_left_out(
    unlimited: Assembly, responder: Http01Responder, clock: Clock
) -> None:
    flow = Flow(RawAcme(unlimited.app), responder)
    await flow.account()
    for n in range(3):
        assert (await flow.order(f"old{n}.pages.test")).status == 201
    clock.at += timedelta(days=8)  # past the 7-day order lifetime, never finalized
    fresh = await flow.order("fresh.pages.test")
    assert await _pages(flow) == [[fresh.header("location")]]
