"""The account's pending-authorizations count through the CA's own request paths, on
SQLite and PostgreSQL: after a challenge met, a challenge failed and a deactivation, it
is the number of the account's authorizations the CA itself reports as pending (RFC 8555
§7.1.6), and what the statement before migration 0010 counted; also after a validation
recovered at startup."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from acmekit.database import to_us
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Flow, key_authorization

OLD_COUNT = (
    "SELECT COUNT(*) FROM authorizations a WHERE a.account_id = ? "
    "AND a.stored_status = 'pending' AND a.expires > ? AND NOT EXISTS (SELECT 1 "
    "FROM challenges c WHERE c.authz_id = a.id AND c.status IN ('valid', 'invalid'))"
)


async def _agree(ca: Assembly, flow: Flow, urls: list[str], expected: int) -> None:
    statuses = [(await flow.get(u)).json()["status"] for u in urls]
    assert statuses.count("pending") == expected, statuses
    account_id = flow.kid.rsplit("/", 1)[-1]
    now = ca.app.authority.now()
    count, _ = ca.store.orders.pending_authorizations(account_id, now)
    with ca.store.db.raw() as c:
        old = c.one(OLD_COUNT, (account_id, to_us(now)))[0]
    assert count == old == expected


async def _challenge(flow: Flow, authz_url: str) -> dict[str, Any]:
    authz = (await flow.get(authz_url)).json()
    return dict(next(c for c in authz["challenges"] if c["type"] == "http-01"))


async def test_the_count_follows_the_request_paths(ca: Assembly, flow: Flow) -> None:
    order_url, _ = await flow.issue("met.example.test")  # a challenge met
    met = (await flow.get(order_url)).json()["authorizations"]
    resp = await flow.order("fails.example.test", "left.example.test", "dropped.example.test")
    assert resp.status == 201, resp.body
    fails, left, dropped = resp.json()["authorizations"]
    urls = [*met, fails, left, dropped]
    await _agree(ca, flow, urls, 3)
    # a challenge failed: the responder knows no such token
    ch = await _challenge(flow, fails)
    assert (await flow.acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
    await ca.app.authority.drain()
    assert (await flow.get(fails)).json()["status"] == "invalid"
    await _agree(ca, flow, urls, 2)
    # deactivated by its client (§7.5.2)
    got = await flow.acme.post(dropped, {"status": "deactivated"}, flow.key, flow.kid)
    assert got.json()["status"] == "deactivated"
    await _agree(ca, flow, urls, 1)
    # the last one met
    ch = await _challenge(flow, left)
    flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
    assert (await flow.acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
    await ca.app.authority.drain()
    await _agree(ca, flow, urls, 0)


async def test_the_count_follows_a_validation_recovered_at_startup(
    ca: Assembly, flow: Flow
) -> None:
    """A challenge a stopped process left processing is still pending (§7.1.6); the
    recovery's validation decides it."""
    await flow.account()
    resp = await flow.order("resumed.example.test")
    assert resp.status == 201, resp.body
    (url,) = resp.json()["authorizations"]
    ch = await _challenge(flow, url)
    authority = ca.app.authority
    started = authority.now() - authority.stale_after - timedelta(seconds=1)
    ch_id = ch["url"].rsplit("/", 1)[-1]
    assert ca.store.orders.start_challenge(ch_id, started, flow.kid)
    await _agree(ca, flow, [url], 1)
    flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
    await authority.recover(lambda account_id: flow.kid)
    await authority.drain()
    assert (await flow.get(url)).json()["status"] == "valid"
    await _agree(ca, flow, [url], 0)
