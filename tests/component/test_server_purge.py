"""The purge (server/purge.py) through real requests, on SQLite and PostgreSQL, with an
injected clock: orders and authorizations with their challenges go once they are past
the grace, those still needed stay (an order's certificate, a reused authorization, a
validated authorization for the audit retention), an authorization that is gone leaves
its order invalid (never ready), and full rate-limit buckets go without changing a
decision."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from acmekit.server.config import Limit, PurgeSettings, RateLimits, ServerConfig
from acmekit.server.purge import LONGEST_VALIDITY
from acmekit.server.repos.purge import Due
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.clocks import SetClock as Clock

DAY = 86400
GRACE = timedelta(days=10)
RETENTION = timedelta(days=100)
LIMIT = 1_000  # a dry run's limit, past the rows of any test here: its counts exact


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limits() -> RateLimits:
    return RateLimits(enabled=False)


@pytest.fixture
async def purge_ca(
    ca_config: ServerConfig, clock: Clock, limits: RateLimits
) -> AsyncIterator[Assembly]:
    purge = PurgeSettings(grace=GRACE, retention=RETENTION, batch=2)
    assembly = assemble(replace(ca_config, purge=purge, rate_limits=limits), now=clock)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


@pytest.fixture
async def pflow(purge_ca: Assembly, responder: Http01Responder) -> Flow:
    flow = Flow(RawAcme(purge_ca.app), responder)
    await flow.account()
    return flow


def _count(ca: Assembly, table: str) -> int:
    with ca.store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def _rows(ca: Assembly) -> tuple[int, int, int]:
    return _count(ca, "orders"), _count(ca, "authorizations"), _count(ca, "challenges")


async def _pending_order(flow: Flow, name: str) -> tuple[str, str]:
    """An order for `name` left pending: (its URL, its authorization's URL)."""
    resp = await flow.order(name)
    assert resp.status == 201, resp.body
    return resp.header("location") or "", resp.json()["authorizations"][0]


async def _status(flow: Flow, url: str) -> int:
    return (await flow.get(url)).status


async def test_expired_orders_and_authorizations_go_after_the_grace(
    purge_ca: Assembly, pflow: Flow, clock: Clock
) -> None:
    order_url, authz_url = await _pending_order(pflow, "left.purge.test")
    await pflow.one_certificate("issued.purge.test")
    before = _rows(purge_ca)
    assert before[0] == 2 and before[1] == 2
    purger = purge_ca.app.purger
    # Expired (7 days), but within the grace: all kept.
    clock.advance(7 * DAY + 60)
    assert purger.due(LIMIT).counted == Due()
    assert purger.everything() == Due()
    assert (await pflow.get(order_url)).json()["status"] == "invalid"
    # Past the grace: the order that never issued goes, with its authorization and its
    # challenges; the issued order and its validated authorization stay.
    clock.advance(GRACE.total_seconds())
    left_challenges = before[2] - _count_challenges_of_issued(purge_ca)
    due = purger.due(LIMIT).counted
    assert due == Due(orders=1, authorizations=1, challenges=left_challenges)
    assert purger.everything() == due
    assert _rows(purge_ca) == (1, 1, before[2] - left_challenges)
    assert await _status(pflow, order_url) == 404
    assert await _status(pflow, authz_url) == 404
    assert purger.due(LIMIT).counted == Due()


def _count_challenges_of_issued(ca: Assembly) -> int:
    with ca.store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM challenges c JOIN authorizations a "
                    "ON a.id = c.authz_id WHERE a.identifier_value = 'issued.purge.test'"
                )
            ).scalar_one()
        )


async def test_a_certificates_authorization_is_kept_for_the_retention(
    purge_ca: Assembly, pflow: Flow, clock: Clock
) -> None:
    await pflow.one_certificate("kept.purge.test")
    order_url = _order_urls(purge_ca, pflow)[0]
    authz_url = (await pflow.get(order_url)).json()["authorizations"][0]
    cert_url = (await pflow.get(order_url)).json()["certificate"]
    purger = purge_ca.app.purger
    # The validated authorization lived 30 days; a certificate it backed may outlive it
    # by the longest validity the BRs allow, and its records by the retention after that.
    clock.advance(30 * DAY + (LONGEST_VALIDITY + RETENTION).total_seconds() - DAY)
    assert purger.everything() == Due()
    assert (await pflow.get(authz_url)).json()["status"] == "expired"
    clock.advance(2 * DAY)
    assert purger.everything().authorizations == 1
    assert await _status(pflow, authz_url) == 404
    # The order keeps its certificate and its status; the certificate is still served.
    assert (await pflow.get(order_url)).json()["status"] == "valid"
    assert (await pflow.get(cert_url)).status == 200
    assert _rows(purge_ca)[:2] == (1, 0)
    assert _count(purge_ca, "certificates") == 1


def _order_urls(ca: Assembly, flow: Flow) -> list[str]:
    with ca.store.engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM orders ORDER BY created")).scalars().all()
    return [f"{flow.acme.base}/acme/order/{i}" for i in ids]


async def test_an_order_reusing_an_authorization_keeps_working(
    purge_ca: Assembly, pflow: Flow, clock: Clock
) -> None:
    first_url, authz_url = await _pending_order(pflow, "reused.purge.test")
    purger = purge_ca.app.purger
    # Five days on, a second order reuses the pending authorization (it outlives the
    # request by more than the reuse margin); the purge runs meanwhile at every step.
    clock.advance(5 * DAY)
    assert purger.everything() == Due()
    second = await pflow.order("reused.purge.test")
    assert second.json()["authorizations"] == [authz_url]
    second_url = second.header("location") or ""
    assert purger.everything() == Due()
    await pflow.solve(second.json())
    assert purger.everything() == Due()
    # The first order is past its grace and goes; the reused authorization stays (valid
    # now, for the second order), which finishes with a certificate.
    clock.advance(2 * DAY + GRACE.total_seconds() + 60)
    assert purger.everything() == Due(orders=1)
    assert await _status(pflow, first_url) == 404
    assert (await pflow.get(second_url)).json()["status"] == "invalid"  # expired too
    assert (await pflow.get(authz_url)).json()["status"] == "valid"


async def test_an_order_whose_authorization_is_gone_is_never_ready(
    purge_ca: Assembly, pflow: Flow
) -> None:
    """As an order made under a longer order_lifetime than the grace now allows would
    find its authorization purged: it is invalid, and finalize is refused."""
    resp = await pflow.order("one.purge.test", "two.purge.test")
    order = resp.json()
    order_url = resp.header("location") or ""
    first, second = order["authorizations"]
    await pflow.solve({"authorizations": [first]})
    authz_id = second.rsplit("/", 1)[1]
    with purge_ca.store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM challenges WHERE authz_id = :i"), {"i": authz_id})
        conn.execute(sa.text("DELETE FROM authorizations WHERE id = :i"), {"i": authz_id})
    assert (await pflow.get(order_url)).json()["status"] == "invalid"
    done = await pflow.finalize(order_url, ("one.purge.test", "two.purge.test"))
    assert done.status == 403, done.body
    assert done.problem_type == "orderNotReady"


@pytest.mark.parametrize(
    "limits",
    [RateLimits(new_orders_per_account=Limit(2, timedelta(hours=1)))],
    ids=["two-orders-an-hour"],
)
async def test_full_buckets_go_and_no_decision_changes(
    purge_ca: Assembly, pflow: Flow, clock: Clock, responder: Http01Responder
) -> None:
    other = Flow(RawAcme(purge_ca.app), responder)
    await other.account()
    for n in range(2):
        assert (await pflow.order(f"b{n}.purge.test")).status == 201
    purger = purge_ca.app.purger
    assert purger.everything().buckets == 0  # the account's bucket is empty, not full
    # An hour and the clock skew later the first account's bucket is full again; the
    # second account then spends one of its two tokens.
    clock.advance(3600 + 600 + 60)
    assert (await other.order("o0.purge.test")).status == 201
    before = _count(purge_ca, "rate_buckets")
    done = purger.everything()
    assert done.buckets >= 1
    assert _count(purge_ca, "rate_buckets") == before - done.buckets
    with purge_ca.store.engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT key FROM rate_buckets")).scalars().all()
    first, second = (f.kid.rsplit("/", 1)[1] for f in (pflow, other))
    assert not [k for k in keys if first in k]
    assert [k for k in keys if second in k]
    # The first account gets two orders and the third is refused, as with its bucket
    # kept; the second account's bucket, not full, was kept: one more, then refused.
    for n in range(2):
        assert (await pflow.order(f"c{n}.purge.test")).status == 201
    refused = await pflow.order("c2.purge.test")
    assert refused.status == 429 and refused.problem_type == "rateLimited"
    assert refused.header("retry-after") == "1800"
    assert (await other.order("o1.purge.test")).status == 201
    assert (await other.order("o2.purge.test")).status == 429


async def test_the_housekeeping_loop_purges_a_batch_a_period(
    purge_ca: Assembly, pflow: Flow, clock: Clock
) -> None:
    """`[purge] batches` batches of `batch` rows (here 1 of 2) each period, no more:
    the loop's first round purges two of the three orders due, the next period the
    third."""
    for n in range(3):
        await _pending_order(pflow, f"h{n}.purge.test")
    clock.advance(7 * DAY + GRACE.total_seconds() + 60)
    app = purge_ca.app
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    serving = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    for _ in range(200):  # the first round runs at once; 10 s at most
        if _rows(purge_ca)[0] < 3:
            break
        await asyncio.sleep(0.05)
    await inbox.put({"type": "lifespan.shutdown"})
    await serving
    assert _rows(purge_ca)[:2] == (1, 1)
    await app.purge_batches()  # the next period's round
    assert _rows(purge_ca) == (0, 0, 0)


async def _serving(app: Any) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        pass

    return asyncio.create_task(app({"type": "lifespan"}, inbox.get, send)), inbox


def _crl_numbers(ca: Assembly) -> list[int]:
    with ca.store.engine.connect() as conn:
        found = conn.execute(sa.text("SELECT number FROM crls ORDER BY shard")).scalars()
        return [int(n) for n in found]


async def test_a_failing_purge_does_not_hold_back_the_crl_refresh(
    ca_config: ServerConfig, clock: Clock
) -> None:
    """A purge the database refuses every round (a batch no statement takes, as an
    unchecked setting could give: SQLite refuses a LIMIT of 1.5, PostgreSQL one below
    0) is logged; the CRLs are refreshed all the same."""
    batch = -1 if ca_config.db_url.startswith("postgresql") else 1.5
    purge = PurgeSettings(batch=batch, every=timedelta(seconds=0.01))  # type: ignore[arg-type]
    config = replace(ca_config, purge=purge, stale_after=1.0)
    ca = assemble(config, now=clock)
    try:
        with pytest.raises((sqlite3.Error, psycopg.Error)):
            ca.app.purger.batches(1)
        serving, inbox = await _serving(ca.app)
        for _ in range(200):  # the start makes every shard's CRL; 10 s at most
            if len(_crl_numbers(ca)) == config.crl.shards:
                break
            await asyncio.sleep(0.05)
        made = _crl_numbers(ca)
        assert made
        clock.advance(config.crl.regenerate_every.total_seconds() + 1)
        for _ in range(200):  # a round every half second; the shards remade off the loop
            if all(now != then for now, then in zip(_crl_numbers(ca), made, strict=True)):
                break
            await asyncio.sleep(0.05)
        assert _crl_numbers(ca) == [n + 1 for n in made]
        await inbox.put({"type": "lifespan.shutdown"})
        await serving
    finally:
        await ca.app.close()
        ca.store.engine.dispose()
