"""Round trips to PostgreSQL per request: a handler's first reads (the order, the
authorization, the challenge; newOrder's reusable authorizations; finalize's order and
the blocklist's answer for its CSR's key) go in the round trip that redeems the request's
nonce and reads its account (or, with nonces in process scope, that reads the account),
not in ones of their own: each round trip costs the CA a wake-up of its process. Counted
at the driver (acmekit_testkit.sqlcount), with the default configuration (rate limits
on).

And the refusals those reads come before stay what they were, on both databases: a
deactivated account, another account's resource, a used nonce and a missing resource get
the same problem documents, and leave the challenge pending and the order unclaimed."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from cryptography import x509

from acmekit.protocol import jose
from acmekit.protocol.ari import cert_id_of
from acmekit.protocol.challenges import key_authorization
from acmekit.protocol.messages import ChallengeStatus
from acmekit.server.config import ServerConfig
from acmekit.server.keycheck import spki_sha256
from acmekit.server.run import Assembly, assemble
from acmekit.server.store import Store
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, Resp
from acmekit_testkit.csr import make_csr
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.pendingorders import stored_account
from acmekit_testkit.sqlcount import SqlCount, counting


@pytest.fixture(params=["database", "process"])
async def counted_pg(
    request: pytest.FixtureRequest, config_on: Callable[[str], ServerConfig]
) -> AsyncIterator[tuple[Assembly, SqlCount]]:
    """The CA on PostgreSQL, nonces in the database (the default there) or in process."""
    with fresh_postgres_database("acmekit_trips") as url, counting() as count:
        assembly = assemble(dataclasses.replace(config_on(url), nonce_scope=str(request.param)))
        yield assembly, count
        await assembly.app.close()
        assembly.store.engine.dispose()


_READS_AUTHZ = "SELECT CAST(json_build_array(a.id,"
_READS_ORDER = "SELECT CAST(json_build_array(o.id,"
_CLAIM = "WITH o AS (UPDATE orders SET csr"
_TAKE = "INSERT INTO rate_buckets"
_READS_PENDING = "SELECT COUNT(*), MIN(a.expires) FROM authorizations"
_READS_BUCKETS = "SELECT n.now, b.key, b.tat FROM"
_READS_BUCKET_OF_CHALLENGE = "SELECT n.now, k.key, (SELECT b.tat FROM rate_buckets b"


async def _trips(count: SqlCount, step: object) -> tuple[int, Resp]:
    before = count.round_trips
    resp: Resp = await step  # type: ignore[misc]
    return count.round_trips - before, resp


@pytest.mark.postgres
async def test_a_handlers_first_read_shares_the_accounts_round_trip(
    counted_pg: tuple[Assembly, SqlCount], responder: Http01Responder
) -> None:
    assembly, count = counted_pg
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    await flow.issue("warm.example.test")  # first uses (settings, preparations) settle
    resp = await flow.order("counted.example.test")
    order_url = resp.header("location") or ""
    authz_url = resp.json()["authorizations"][0]

    trips, authz = await _trips(count, flow.get(authz_url))
    assert authz.status == 200 and trips == 1  # was 2: the account, then the authorization
    ch = next(c for c in authz.json()["challenges"] if c["type"] == "http-01")
    trips, got = await _trips(count, flow.get(ch["url"]))  # POST-as-GET of the challenge
    assert got.status == 200 and got.json()["status"] == "pending" and trips == 1
    trips, got = await _trips(count, flow.get(order_url))
    assert got.status == 200 and got.json()["status"] == "pending" and trips == 1

    flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
    mark = len(count.trips)
    assert (await flow.acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
    await assembly.app.authority.drain()
    # The challenge's read with the account's, and (rate limits on) its failed-validations
    # bucket's, and neither in a round trip of its own.
    first, *rest = count.trips[mark:]
    assert len(first) == 3 and first[1].startswith(_READS_AUTHZ)
    assert first[2].startswith(_READS_BUCKET_OF_CHALLENGE)
    ahead = (_READS_AUTHZ, _READS_BUCKET_OF_CHALLENGE, _READS_BUCKETS)
    assert not [t for trip in rest for t in trip if t.startswith(ahead)]
    trips, got = await _trips(count, flow.get(order_url))
    assert got.json()["status"] == "ready" and trips == 1


@pytest.mark.postgres
async def test_a_challenge_read_sends_no_failed_validations_read(
    counted_pg: tuple[Assembly, SqlCount], responder: Http01Responder
) -> None:
    """With rate limits on, the failed-validations bucket is read ahead only for a
    payload that may be a JSON object: a POST-as-GET (an empty payload) and any other
    value are answered or refused before that limit is checked. The answers are the
    same."""
    assembly, count = counted_pg
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    await flow.issue("warm.example.test")
    resp = await flow.order("counted.example.test")
    authz = (await flow.get(resp.json()["authorizations"][0])).json()
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    mark = len(count.trips)
    got = await flow.get(ch["url"])  # POST-as-GET: was 3, the bucket's read with them
    assert got.status == 200 and got.json()["status"] == "pending"
    assert [len(t) for t in count.trips[mark:]] == [2]
    assert count.trips[mark][1].startswith(_READS_AUTHZ)
    acme, key, kid = flow.acme, flow.key, flow.kid
    for payload in (b"null", b"[]", b'"x"'):
        got = await acme.post(ch["url"], payload, key, kid)
        assert (got.status, got.json()["detail"]) == (
            400,
            "challenge response must be a JSON object",
        )
    assert not [t for trip in count.trips[mark:] for t in trip if "rate_buckets" in t]
    # A response, with JSON's whitespace before its object: its bucket read with it.
    flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
    mark = len(count.trips)
    assert (await acme.post(ch["url"], b" \n{}", key, kid)).status == 200
    await assembly.app.authority.drain()
    first = count.trips[mark]
    assert len(first) == 3 and first[2].startswith(_READS_BUCKET_OF_CHALLENGE)
    assert (await flow.get(ch["url"])).json()["status"] == "valid"


@pytest.mark.postgres
async def test_finalize_reads_its_order_and_the_blocklist_with_the_account(
    counted_pg: tuple[Assembly, SqlCount], responder: Http01Responder
) -> None:
    assembly, count = counted_pg
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    await flow.issue("warm.example.test")
    resp = await flow.order("counted.example.test")
    order_url = resp.header("location") or ""
    await flow.solve(resp.json())
    order = (await flow.get(order_url)).json()
    _, csr = make_csr("counted.example.test")
    nonce = await flow.acme.nonce()
    mark = len(count.trips)
    done = await flow.acme.post(
        order["finalize"], {"csr": jose.b64e(csr)}, flow.key, flow.kid, nonce=nonce
    )
    assert done.status == 200, done.body
    await assembly.app.authority.drain()
    # The first round trip carries the nonce (or the account), the order's read and
    # the blocklist's for the CSR's key, which no other round trip sends.
    first, *rest = count.trips[mark:]
    assert len(first) == 3 and first[1].startswith(_READS_ORDER)
    assert first[2].startswith("SELECT spki_sha256 FROM blocked_keys")
    assert not [t for trip in rest for t in trip if t.startswith(_READS_ORDER)]
    assert not [t for trip in rest for t in trip if "blocked_keys" in t]
    # With rate limits on, the transaction's BEGIN, the issuance buckets' takes and the
    # claim go in one round trip, then COMMIT (were BEGIN, each take, the claim, COMMIT:
    # five).
    claim = next(i for i, trip in enumerate(rest) if trip[-1].startswith(_CLAIM))
    assert rest[claim][0] == "BEGIN" and rest[claim + 1] == ("COMMIT",)
    assert [t.startswith(_TAKE) for t in rest[claim][1:]] == [True, True, False]


async def _refusals_setup(flow: Flow, other: Flow) -> tuple[dict[str, str], dict[str, object], str]:
    """Two accounts; the first's order ready to finalize, with a second order's challenge
    left pending. (urls, the ready order's document, the CSR)."""
    assert (await flow.account()).status == 201
    assert (await other.account()).status == 201
    resp = await flow.order("ready.example.test")
    order_url = resp.header("location") or ""
    await flow.solve(resp.json())
    ready = (await flow.get(order_url)).json()
    pending = await flow.order("pending.example.test")
    authz_url = pending.json()["authorizations"][0]
    authz = (await flow.get(authz_url)).json()
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    _, csr = make_csr("ready.example.test")
    urls = {"order": order_url, "authz": authz_url, "challenge": ch["url"]}
    return urls, ready, jose.b64e(csr)


def _unchanged(store: Store, urls: dict[str, str]) -> None:
    """Nothing the refused requests could have written was written."""
    order = store.orders.order(urls["order"].rsplit("/", 1)[1])
    assert order is not None and order.finalize_started is None and order.csr is None
    ch = store.orders.challenge(urls["challenge"].rsplit("/", 1)[1])
    assert ch is not None and ch.status == ChallengeStatus.PENDING and ch.started is None
    with store.db.once() as c:
        assert c.one("SELECT COUNT(*) FROM certificates", ())[0] == 1  # the first's only


async def _refused(flow: Flow, urls: dict[str, str], ready: dict[str, object], csr: str) -> list:
    """Each request the resources answer, as (status, problem document)."""
    acme = flow.acme
    answers = [
        await flow.get(urls["order"]),
        await flow.get(urls["authz"]),
        await flow.get(urls["challenge"]),
        await acme.post(urls["challenge"], {}, flow.key, flow.kid),
        await acme.post(str(ready["finalize"]), {"csr": csr}, flow.key, flow.kid),
    ]
    return [(r.status, r.json()) for r in answers]


async def test_another_accounts_resources_are_refused_and_untouched(
    ca: Assembly, acme: RawAcme, responder: Http01Responder
) -> None:
    flow, other = Flow(acme, responder), Flow(acme, responder)
    urls, ready, csr = await _refusals_setup(flow, other)
    # A certificate first, so that a finalize that went through would show as a second.
    await flow.issue("first.example.test")
    got = await _refused(other, urls, ready, csr)
    unauthorized = "urn:ietf:params:acme:error:unauthorized"

    def refused(detail: str) -> tuple[int, dict[str, object]]:
        return 403, {"type": unauthorized, "detail": detail, "status": 403}

    assert got == [
        refused("this order belongs to another account"),
        refused("this authorization belongs to another account"),
        refused("this authorization belongs to another account"),
        refused("this authorization belongs to another account"),
        refused("this order belongs to another account"),
    ]
    _unchanged(ca.store, urls)


async def test_a_deactivated_account_is_refused_before_any_read_is_used(
    ca: Assembly, acme: RawAcme, responder: Http01Responder
) -> None:
    flow, other = Flow(acme, responder), Flow(acme, responder)
    urls, ready, csr = await _refusals_setup(flow, other)
    await flow.issue("first.example.test")
    gone = await acme.post(flow.kid, {"status": "deactivated"}, flow.key, flow.kid)
    assert gone.status == 200
    got = await _refused(flow, urls, ready, csr)
    refused = (
        403,
        {
            "type": "urn:ietf:params:acme:error:unauthorized",
            "detail": "account is deactivated",
            "status": 403,
        },
    )
    assert got == [refused] * 5
    _unchanged(ca.store, urls)


async def test_a_used_nonce_and_a_missing_resource_are_refused_as_before(
    ca: Assembly, acme: RawAcme, responder: Http01Responder
) -> None:
    flow, other = Flow(acme, responder), Flow(acme, responder)
    urls, ready, csr = await _refusals_setup(flow, other)
    await flow.issue("first.example.test")
    nonce = await acme.nonce()
    first = await acme.post(urls["order"], None, flow.key, flow.kid, nonce=nonce)
    assert first.status == 200
    again = await acme.post(str(ready["finalize"]), {"csr": csr}, flow.key, flow.kid, nonce=nonce)
    assert again.status == 400
    assert again.json()["type"] == "urn:ietf:params:acme:error:badNonce"
    _unchanged(ca.store, urls)
    base = urls["order"].rsplit("/", 1)[0]
    missing = await flow.get(f"{base}/no-such-order")
    assert (missing.status, missing.json()["detail"]) == (404, "no order no-such-order")
    missing = await acme.post(
        str(ready["finalize"]).replace(urls["order"].rsplit("/", 1)[1], "no-such-order"),
        {"csr": csr},
        flow.key,
        flow.kid,
    )
    assert (missing.status, missing.json()["detail"]) == (404, "no order no-such-order")


@pytest.mark.postgres
def test_a_read_ahead_of_a_used_nonce_is_skipped_and_read_when_asked() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with fresh_postgres_database("acmekit_ahead") as url, counting() as count:
        store = Store.from_url(url)
        try:
            acct = stored_account(store, now)
            ahead = store.orders.order_with_authorizations_ahead("none")
            assert store.accounts.redeem_nonce_for("n1", now, acct.id, (ahead,)) == (True, acct)
            before = count.round_trips
            assert ahead.result() is None  # read with the nonce: no round trip now
            assert count.round_trips == before
            assert ahead.result() is None  # asked again: read afresh
            assert count.round_trips == before + 1
            ahead = store.orders.order_with_authorizations_ahead("none")
            assert store.accounts.redeem_nonce_for("n1", now, acct.id, (ahead,)) == (False, None)
            before = count.round_trips
            assert ahead.result() is None  # skipped with the nonce: read now
            assert count.round_trips == before + 1
        finally:
            store.engine.dispose()


async def _ready_order(flow: Flow) -> dict[str, Any]:
    assert (await flow.account()).status == 201
    resp = await flow.order("ready.example.test")
    order_url = resp.header("location") or ""
    await flow.solve(resp.json())
    order: dict[str, Any] = (await flow.get(order_url)).json()
    order["url"] = order_url
    return order


def _claimed(store: Store, order: dict[str, Any]) -> bool:
    found = store.orders.order(str(order["url"]).rsplit("/", 1)[1])
    assert found is not None
    return found.finalize_started is not None


async def test_a_key_blocked_in_the_database_is_refused_as_before(
    ca: Assembly, acme: RawAcme, responder: Http01Responder
) -> None:
    flow = Flow(acme, responder)
    order = await _ready_order(flow)
    key, csr = make_csr("ready.example.test")
    ca.store.certificates.block_key(spki_sha256(key.public_key()), datetime.now(UTC), "ab")
    got = await acme.post(order["finalize"], {"csr": jose.b64e(csr)}, flow.key, flow.kid)
    assert (got.status, got.json()) == (
        400,
        {
            "type": "urn:ietf:params:acme:error:badPublicKey",
            "detail": "certificate key is blocked: it belongs to a certificate revoked "
            "for keyCompromise",
            "status": 400,
        },
    )
    assert not _claimed(ca.store, order)
    # Another key, in a CSR that does not parse, and one that names other identifiers:
    # each refused as before, the order left unclaimed.
    got = await acme.post(order["finalize"], {"csr": jose.b64e(b"junk")}, flow.key, flow.kid)
    assert (got.status, got.json()["type"]) == (400, "urn:ietf:params:acme:error:badCSR")
    _, other = make_csr("other.example.test")
    got = await acme.post(order["finalize"], {"csr": jose.b64e(other)}, flow.key, flow.kid)
    assert (got.status, got.json()["type"]) == (400, "urn:ietf:params:acme:error:badCSR")
    assert not _claimed(ca.store, order)
    _, good = make_csr("ready.example.test")
    got = await acme.post(order["finalize"], {"csr": jose.b64e(good)}, flow.key, flow.kid)
    assert got.status == 200 and _claimed(ca.store, order)


async def test_a_key_the_configuration_blocks_is_refused_as_before(
    ca_config: ServerConfig, acme: RawAcme, responder: Http01Responder
) -> None:
    key, csr = make_csr("ready.example.test")
    blocked = spki_sha256(key.public_key())
    config = dataclasses.replace(
        ca_config, keys=dataclasses.replace(ca_config.keys, blocked=(blocked.upper(),))
    )
    assembly = assemble(config)
    try:
        own = RawAcme(assembly.app)
        flow = Flow(own, responder)
        order = await _ready_order(flow)
        with counting() as count:
            got = await own.post(order["finalize"], {"csr": jose.b64e(csr)}, flow.key, flow.kid)
        assert got.json()["detail"] == (
            "certificate key is blocked: the CA's configuration blocks it ([keys] blocked)"
        )
        assert not [t for t in count.texts if "blocked_keys" in t]  # nothing to read
        assert not _claimed(assembly.store, order)
    finally:
        await assembly.app.close()
        assembly.store.engine.dispose()


@pytest.mark.postgres
async def test_new_order_reads_its_candidates_with_the_account(
    counted_pg: tuple[Assembly, SqlCount], responder: Http01Responder
) -> None:
    assembly, count = counted_pg
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    await flow.issue("warm.example.test")
    mark = len(count.trips)
    resp = await flow.order("one.example.test", "two.example.test")
    assert resp.status == 201, resp.body
    # Each identifier's reusable authorizations, read with the account, and (rate limits
    # on) the issuance limits' buckets.
    first, *rest = count.trips[mark:]
    assert len(first) == 4 and all(t.startswith(_READS_AUTHZ) for t in first[1:3])
    assert first[3].startswith(_READS_BUCKETS)
    ahead = (_READS_AUTHZ, _READS_PENDING, _READS_BUCKETS)
    assert not [t for trip in rest[1:] for t in trip if t.startswith(ahead)]
    # Then the new-order bucket's take with the account's pending count (after the
    # signature: its cost grows with the account; before the take, which then holds
    # its row lock no longer than alone), and the order's insert: was 5 with the two
    # limit reads each a round trip of its own.
    assert len(rest) == 2 and len(rest[0]) == 2 and rest[0][0].startswith(_READS_PENDING)
    assert rest[0][1].startswith("INSERT INTO rate_buckets")
    again = await flow.order("one.example.test")  # its pending authorization reused
    assert again.json()["authorizations"][0] in resp.json()["authorizations"]


@pytest.mark.postgres
async def test_a_renewal_order_is_written_in_one_round_trip(
    counted_pg: tuple[Assembly, SqlCount], responder: Http01Responder
) -> None:
    """An order whose names all reuse valid authorizations writes its row alone, in
    autocommit (was BEGIN, the insert, COMMIT); one that replaces a certificate (RFC
    9773 §5) sends its claim on the certificate, its insert and its authorizations' marks
    before one Sync (was the claim alone, then BEGIN, each, COMMIT)."""
    assembly, count = counted_pg
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    _, issued = await flow.issue("renewed.example.test")
    mark = len(count.trips)
    resp = await flow.order("renewed.example.test")
    assert resp.status == 201 and resp.json()["status"] == "ready", resp.body
    # The nonce's with the reads, the new-order take (rate limits on), the insert.
    trips = count.trips[mark:]
    assert len(trips) == 3 and len(trips[2]) == 1
    assert trips[2][0].startswith("INSERT INTO orders")
    pem = (await flow.get(issued["certificate"])).body
    cert_id = str(cert_id_of(x509.load_pem_x509_certificates(pem)[0]))
    body = {**_names("renewed.example.test"), "replaces": cert_id}
    mark = len(count.trips)
    resp = await flow.acme.post(f"{flow.acme.base}/acme/new-order", body, flow.key, flow.kid)
    assert resp.status == 201 and resp.json()["replaces"] == cert_id, resp.body
    trips = count.trips[mark:]
    assert not [t for trip in trips for t in trip if t in ("BEGIN", "COMMIT")]
    assert [t.split()[0] for t in trips[-1]] == ["UPDATE", "INSERT", "UPDATE"]
    assert trips[-1][0].startswith("UPDATE certificates SET replaced_by")
    # The writes after the claim, made only while it is the order's (no statement
    # failing where it is lost: test_store_claim_lost_quietly.py), as the marks' UPDATE
    # shows (the texts are kept to their first 120 characters).
    assert trips[-1][1].startswith("INSERT INTO orders")
    assert trips[-1][2].startswith("UPDATE authorizations SET renewal_order_id")
    assert "AND EXISTS (SELECT 1 FROM" in trips[-1][2]
    assert not [t for trip in trips[:-1] for t in trip if "replaced_by = " in t]
    # The claim's holder read once, where `replaces` is checked; the compare-and-set
    # judges a claim taken since.
    assert len([t for trip in trips for t in trip if t.startswith("SELECT replaced_by")]) == 1


@pytest.mark.parametrize(
    ("value", "refused"),
    [("nul\x00.example.test", "rejectedIdentifier"), ("\ud800.example.test", "malformed")],
    ids=["nul", "lone-surrogate"],
)
async def test_a_name_postgresql_cannot_hold_is_refused_as_before(
    ca: Assembly, acme: RawAcme, responder: Http01Responder, value: str, refused: str
) -> None:
    """newOrder's reads ahead take the names from the payload before the handler's
    checks: one the driver or the server refuses (PostgreSQL's text holds no NUL, UTF-8
    no lone surrogate) leaves the nonce's statement to run alone, and the handler's
    checks refuse the name as they did."""
    flow = Flow(acme, responder)
    assert (await flow.account()).status == 201
    nonce = await acme.nonce()
    payload = {"identifiers": [{"type": "dns", "value": value}]}
    url = f"{acme.base}/acme/new-order"
    got = await acme.post(url, payload, flow.key, flow.kid, nonce=nonce)
    assert (got.status, got.json()["type"]) == (400, f"urn:ietf:params:acme:error:{refused}")
    again = await acme.post(url, payload, flow.key, flow.kid, nonce=nonce)
    assert again.json()["type"] == "urn:ietf:params:acme:error:badNonce"  # it was redeemed


@pytest.mark.postgres
def test_a_read_ahead_the_driver_refuses_leaves_the_nonce_to_run_alone() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with fresh_postgres_database("acmekit_ahead_nul") as url:
        store = Store.from_url(url)
        try:
            acct = stored_account(store, now)
            ahead = store.orders.authorization_ahead("nul\x00")  # text holds no NUL
            assert store.accounts.redeem_nonce_for("n1", now, acct.id, (ahead,)) == (True, acct)
            with pytest.raises(psycopg.DataError):
                ahead.result()  # made, and refused, where the handler makes it
            assert store.accounts.redeem_nonce_for("n1", now, acct.id) == (False, None)
        finally:
            store.engine.dispose()


async def test_a_payload_is_not_looked_into_for_a_nonce_this_ca_did_not_issue(
    ca: Assembly, acme: RawAcme, responder: Http01Responder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reads made from a payload (newOrder's names, finalize's CSR) are made only
    once the nonce passed the CA's own checks: a request with a forged nonce costs no
    more than before."""
    flow = Flow(acme, responder)
    order = await _ready_order(flow)
    authority = ca.app.authority
    looked: list[str] = []
    reusable, blocked = authority.reusable_ahead, authority.policy.blocked_ahead
    monkeypatch.setattr(
        authority, "reusable_ahead", lambda *a: looked.append("names") or reusable(*a)
    )
    monkeypatch.setattr(
        authority.policy, "blocked_ahead", lambda *a: looked.append("csr") or blocked(*a)
    )
    forged = jose.b64e(b"\x00" * 32)
    _, csr = make_csr("ready.example.test")
    urls = [(order["finalize"], {"csr": jose.b64e(csr)})]
    urls.append((f"{acme.base}/acme/new-order", _names("forged.example.test")))
    for url, payload in urls:
        got = await acme.post(url, payload, flow.key, flow.kid, nonce=forged)
        assert got.json()["type"] == "urn:ietf:params:acme:error:badNonce"
    assert looked == []
    for url, payload in urls:  # with a nonce of the CA's, each looked at once
        assert (await acme.post(url, payload, flow.key, flow.kid)).status in (200, 201)
    # On SQLite nothing is sent ahead, so nothing is taken from a payload early: each
    # read is made where the handler reads, from the verified payload.
    assert looked == (["csr", "names"] if authority.store.remote else [])


def _names(*names: str) -> dict[str, Any]:
    return {"identifiers": [{"type": "dns", "value": n} for n in names]}
