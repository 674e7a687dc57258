"""Rate limits in-process, with an injected clock: the 51st certificate for a registered
domain in a week, duplicates, orders per account, failed validations, accounts per IP,
overrides, and the ARI `replaces` exemption."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509

from acmekit.database import to_us
from acmekit.protocol.problems import Problem
from acmekit.server.ari import cert_id_of
from acmekit.server.config import Limit, RateLimits, ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, Resp
from acmekit_testkit.clocks import SetClock as Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limits() -> RateLimits:
    return RateLimits()


@pytest.fixture
async def policy_ca(
    ca_config: ServerConfig, clock: Clock, limits: RateLimits
) -> AsyncIterator[Assembly]:
    assembly = assemble(replace(ca_config, rate_limits=limits), now=clock)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


@pytest.fixture
def pflow(policy_ca: Assembly, responder: Http01Responder) -> Flow:
    return Flow(RawAcme(policy_ca.app), responder)


def assert_limited(resp: Resp, retry_after: int) -> None:
    assert resp.status == 429, resp.body
    assert resp.problem_type == "rateLimited"
    assert resp.header("retry-after") == str(retry_after)


async def test_51st_certificate_for_a_registered_domain_in_a_week(
    pflow: Flow, clock: Clock
) -> None:
    for n in range(50):
        await pflow.issue(f"a{n}.limit.test")
    clock.advance(3600)
    refused = await pflow.order("www.other.limit.test")
    # 50 per 7 days refills one token every 12096 s; an hour of it has passed.
    assert_limited(refused, 12096 - 3600)
    assert "certificates_per_domain" in refused.json()["detail"]
    assert (await pflow.order("elsewhere.test")).status == 201
    clock.advance(12096 - 3600)
    assert (await pflow.order("www.other.limit.test")).status == 201


@pytest.mark.parametrize(
    "limits", [RateLimits(new_orders_per_account=Limit(3, timedelta(hours=3)))]
)
async def test_orders_per_account(pflow: Flow) -> None:
    await pflow.account()
    for n in range(3):
        assert (await pflow.order(f"o{n}.orders.test")).status == 201
    assert_limited(await pflow.order("o4.orders.test"), 3600)
    other = Flow(pflow.acme, pflow.responder)
    await other.account()
    assert (await other.order("o4.orders.test")).status == 201


async def test_duplicate_certificates(pflow: Flow, clock: Clock) -> None:
    for _ in range(5):
        await pflow.issue("dup.test", "www.dup.test")
    refused = await pflow.order("www.dup.test", "dup.test")
    assert_limited(refused, 7 * 86400 // 5)
    assert "duplicate_certificates" in refused.json()["detail"]
    assert (await pflow.order("dup.test")).status == 201  # another set of names
    clock.advance(7 * 86400 // 5)
    assert (await pflow.order("dup.test", "www.dup.test")).status == 201


@pytest.mark.parametrize("limits", [RateLimits(duplicate_certificates=Limit(1, timedelta(days=7)))])
async def test_finalize_takes_its_limits_all_or_none(pflow: Flow, policy_ca: Assembly) -> None:
    """Two orders for one set of names pass newOrder's check; the second finalize is
    refused by duplicate_certificates and takes nothing: certificates_per_domain is as
    the first left it, and the order stays ready."""
    await pflow.account()
    first = await pflow.order("atomic.test")
    second = await pflow.order("atomic.test")
    await pflow.solve(first.json())
    url = first.header("location") or ""
    assert (await pflow.finalize(url, ("atomic.test",))).status == 200
    buckets = policy_ca.store.buckets
    domain_tat = buckets.tat("certificates_per_domain:atomic.test")
    assert domain_tat is not None
    again = second.header("location") or ""
    assert_limited(await pflow.finalize(again, ("atomic.test",)), 7 * 86400)
    assert buckets.tat("certificates_per_domain:atomic.test") == domain_tat
    assert (await pflow.get(again)).json()["status"] == "ready"


@pytest.mark.parametrize(
    "limits",
    [RateLimits(certificates_per_domain=Limit(1, timedelta(days=7), {"big.test": 3}))],
)
async def test_override_per_registered_domain(pflow: Flow) -> None:
    await pflow.issue("small.test")
    assert_limited(await pflow.order("www.small.test"), 7 * 86400)
    for n in range(3):
        await pflow.issue(f"h{n}.big.test")
    assert_limited(await pflow.order("h9.big.test"), 7 * 86400 // 3)


async def _fail_once(flow: Flow, name: str) -> Resp:
    order = (await flow.order(name)).json()
    authz = (await flow.get(order["authorizations"][0])).json()
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    resp = await flow.acme.post(ch["url"], {}, flow.key, flow.kid)  # nothing served: 404
    await flow.wait_for_authorizations(order)
    return resp


async def test_failed_validations_per_account_and_hostname(pflow: Flow, clock: Clock) -> None:
    await pflow.account()
    for _ in range(5):
        assert (await _fail_once(pflow, "fail.test")).status == 200
    assert_limited(await _fail_once(pflow, "fail.test"), 720)  # 5 an hour: one per 12 min
    assert (await _fail_once(pflow, "other.fail.test")).status == 200
    clock.advance(720)
    assert (await _fail_once(pflow, "fail.test")).status == 200


class FromAddress(RawAcme):
    """The in-process driver, with the ASGI scope's `client` set as a listener sets it."""

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


@pytest.mark.parametrize("limits", [RateLimits(new_accounts_per_ip=Limit(2, timedelta(hours=3)))])
async def test_new_accounts_per_ip(policy_ca: Assembly, responder: Http01Responder) -> None:
    here = FromAddress(policy_ca.app, "203.0.113.7")
    for _ in range(2):
        assert (await Flow(here, responder).account()).status == 201
    refused = Flow(here, responder)
    assert_limited(await refused.account(), 5400)  # 2 per 3 hours: one per 90 minutes
    assert refused.kid == ""
    assert (
        await Flow(FromAddress(policy_ca.app, "203.0.113.8"), responder).account()
    ).status == 201
    # without a client address (in-process) no per-IP limit applies
    assert (await Flow(RawAcme(policy_ca.app), responder).account()).status == 201


@pytest.mark.parametrize(
    "limits", [RateLimits(certificates_per_domain=Limit(1, timedelta(days=7)))]
)
async def test_replacement_is_exempt_and_replaces_once(pflow: Flow) -> None:
    _, order = await pflow.issue("renew.test")
    leaf = x509.load_pem_x509_certificates((await pflow.get(order["certificate"])).body)[0]
    cert_id = str(cert_id_of(leaf))
    assert_limited(await pflow.order("renew.test"), 7 * 86400)
    url = f"{pflow.acme.base}/acme/new-order"
    body = {"identifiers": [{"type": "dns", "value": "renew.test"}], "replaces": cert_id}
    first = await pflow.acme.post(url, body, pflow.key, pflow.kid)
    assert first.status == 201, first.body
    assert first.json()["replaces"] == cert_id
    await pflow.finalize(first.header("location") or "", ("renew.test",))
    second = await pflow.acme.post(url, body, pflow.key, pflow.kid)
    assert second.status == 409 and second.problem_type == "alreadyReplaced"


async def test_replaces_must_name_a_certificate_of_this_account(pflow: Flow) -> None:
    _, order = await pflow.issue("mine.test")
    leaf = x509.load_pem_x509_certificates((await pflow.get(order["certificate"])).body)[0]
    stranger = Flow(pflow.acme, pflow.responder)
    await stranger.account()
    url = f"{pflow.acme.base}/acme/new-order"
    idents = [{"type": "dns", "value": "mine.test"}]
    for replaces in (str(cert_id_of(leaf)), "aYhba4dGQEHhs3uEe6CuLN4ByMg.AIdlQyE", "junk", 7):
        body = {"identifiers": idents, "replaces": replaces}
        resp = await stranger.acme.post(url, body, stranger.key, stranger.kid)
        assert resp.status == 400 and resp.problem_type == "malformed", (replaces, resp.body)
    unrelated = {
        "identifiers": [{"type": "dns", "value": "x.test"}],
        "replaces": str(cert_id_of(leaf)),
    }
    resp = await pflow.acme.post(url, unrelated, pflow.key, pflow.kid)
    assert resp.status == 400 and resp.problem_type == "malformed"


@pytest.mark.parametrize(
    "limits", [RateLimits(enabled=False, new_orders_per_account=Limit(0, timedelta(hours=1)))]
)
async def test_limits_switched_off(pflow: Flow) -> None:
    await pflow.account()
    assert (await pflow.order("free.test")).status == 201


async def test_failed_validations_of_a_renewal_are_exempt(pflow: Flow) -> None:
    """RFC 9773 §5: an order that replaces a certificate is exempt from every limit,
    so a renewal whose validation keeps failing is never locked out by its failures."""
    _, order = await pflow.issue("flaky.renew.test")
    leaf = x509.load_pem_x509_certificates((await pflow.get(order["certificate"])).body)[0]
    cert_id = str(cert_id_of(leaf))
    url = f"{pflow.acme.base}/acme/new-order"
    body = {"identifiers": [{"type": "dns", "value": "flaky.renew.test"}], "replaces": cert_id}
    for attempt in range(7):
        created = await pflow.acme.post(url, body, pflow.key, pflow.kid)
        assert created.status == 201, (attempt, created.body)
        authz_url = created.json()["authorizations"][0]
        authz = (await pflow.get(authz_url)).json()
        if authz["status"] == "valid":  # the first renewal reuses the original's
            await pflow.acme.post(authz_url, {"status": "deactivated"}, pflow.key, pflow.kid)
            continue
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        started = await pflow.acme.post(ch["url"], {}, pflow.key, pflow.kid)  # 404: fails
        assert started.status == 200, (attempt, started.body)
        await pflow.wait_for_authorizations(created.json())


async def test_concurrent_finalizes_take_once(
    pflow: Flow, policy_ca: Assembly, clock: Clock
) -> None:
    """Two finalizes of one order at once: one claims it; the other is refused
    (orderNotReady) and, if it got as far as the claim, its takes were rolled back with
    it. The registered domain's bucket moved by exactly one certificate."""
    await pflow.account()
    order = await pflow.order("race.finalize.test")
    await pflow.solve(order.json())
    url = order.header("location") or ""
    got = await asyncio.gather(*(pflow.finalize(url, ("race.finalize.test",)) for _ in range(2)))
    assert sorted(r.status for r in got) == [200, 403], [r.body for r in got]
    assert next(r for r in got if r.status == 403).problem_type == "orderNotReady"
    one_step = 7 * 86400 * 1_000_000 // 50  # 50 per week
    tat = policy_ca.store.buckets.tat("certificates_per_domain:finalize.test")
    assert tat == to_us(clock.t) + one_step


@pytest.mark.parametrize("limits", [RateLimits(duplicate_certificates=Limit(1, timedelta(days=7)))])
async def test_a_failure_refunds_once_and_never_after_issuance(
    pflow: Flow, policy_ca: Assembly
) -> None:
    """An issuance that fails after another one completed the order (a retaken, stale
    finalize) or fails an order already failed gives nothing back: only the failure
    that makes the order invalid refunds what its claim took. Otherwise each extra
    failure is one more certificate beyond the limit."""
    await pflow.account()
    first = await pflow.order("refund.test")
    await pflow.solve(first.json())
    url = first.header("location") or ""
    assert (await pflow.finalize(url, ("refund.test",))).status == 200
    buckets = policy_ca.store.buckets
    tat = buckets.tat("duplicate_certificates:" + _dup_key(policy_ca))
    order_id = url.rstrip("/").rsplit("/", 1)[-1]
    record = policy_ca.store.orders.order(order_id)
    assert record is not None and record.certificate_id is not None
    failure = Problem("urn:ietf:params:acme:error:serverInternal", "late failure", 500)
    authority = policy_ca.app.authority
    authority._fail(record, failure)  # the retaken issuance failing after the first won
    authority._fail(record, failure)
    assert buckets.tat("duplicate_certificates:" + _dup_key(policy_ca)) == tat
    assert policy_ca.store.orders.order(order_id) == record
    assert_limited(await pflow.order("refund.test"), 7 * 86400)


def _dup_key(assembly: Assembly) -> str:
    with assembly.store.engine.connect() as c:
        rows = c.execute(sa.text("SELECT key FROM rate_buckets")).all()
    keys = [r[0] for r in rows if str(r[0]).startswith("duplicate_certificates:")]
    assert len(keys) == 1, keys
    return str(keys[0]).split(":", 1)[1]
