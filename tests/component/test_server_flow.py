"""The CA's RFC 8555 flows end to end, in-process, with real validation on loopback."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from acmekit.protocol import jose
from acmekit.protocol.challenges import key_authorization
from acmekit.server import paths
from acmekit_testkit.acme_raw import Flow, RawAcme, Resp, new_key
from acmekit_testkit.csr import make_csr


async def test_directory_and_nonces(acme: RawAcme) -> None:
    directory = await acme.directory()
    for name in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert directory[name].startswith("https://ca.test/acme/")
    assert "meta" in directory
    get = await acme.request("GET", directory["newNonce"])
    head = await acme.request("HEAD", directory["newNonce"])
    assert (get.status, head.status) == (204, 200)
    assert get.header("replay-nonce") != head.header("replay-nonce")
    assert head.header("cache-control") == "no-store"
    assert 'rel="index"' in (head.header("link") or "")


async def test_issue_one_certificate(flow: Flow) -> None:
    order_url, order = await flow.issue("www.flow.test", "flow.test")
    assert order["status"] == "valid"
    cert = await flow.get(order["certificate"])
    assert cert.status == 200
    assert cert.header("content-type") == "application/pem-certificate-chain"
    assert 'rel="up"' in " ".join(cert.headers["link"])
    chain = x509.load_pem_x509_certificates(cert.body)
    assert len(chain) == 2
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["flow.test", "www.flow.test"]
    again = (await flow.get(order_url)).json()
    assert again["certificate"] == order["certificate"]


async def test_account_exists_and_only_return_existing(flow: Flow, acme: RawAcme) -> None:
    first = await flow.account(contact=["mailto:a@flow.test"])
    assert first.status == 201
    assert first.json()["contact"] == ["mailto:a@flow.test"]
    second = await flow.account()
    assert second.status == 200 and second.header("location") == first.header("location")
    stranger = await acme.post(
        f"{acme.base}/acme/new-account", {"onlyReturnExisting": True}, new_key()
    )
    assert stranger.status == 400 and stranger.problem_type == "accountDoesNotExist"


async def test_account_update_and_deactivation(flow: Flow, acme: RawAcme) -> None:
    await flow.account()
    upd = await acme.post(flow.kid, {"contact": ["mailto:new@flow.test"]}, flow.key, flow.kid)
    assert upd.status == 200 and upd.json()["contact"] == ["mailto:new@flow.test"]
    gone = await acme.post(flow.kid, {"status": "deactivated"}, flow.key, flow.kid)
    assert gone.json()["status"] == "deactivated"
    after = await flow.order("late.flow.test")
    assert after.status == 403 and after.problem_type == "unauthorized"


async def test_account_orders_list(flow: Flow, acme: RawAcme) -> None:
    order_url, _ = await flow.issue("listed.flow.test")
    orders = (await flow.get(flow.kid + "/orders")).json()["orders"]
    assert orders == [order_url]


async def test_key_change(flow: Flow, acme: RawAcme) -> None:
    await flow.account()
    old_key, new = flow.key, new_key()
    url = f"{acme.base}/acme/key-change"
    inner = jose.sign(
        new, {"account": flow.kid, "oldKey": jose.jwk_from_key(old_key)}, url=url, nonce=None
    )
    resp = await acme.post(url, inner, old_key, flow.kid)
    assert resp.status == 200, resp.body
    stale = await acme.post(f"{acme.base}/acme/new-order", {"identifiers": []}, old_key, flow.kid)
    assert stale.status == 400 and stale.problem_type == "malformed"
    flow.key = new
    assert (await flow.order("rolled.flow.test")).status == 201


async def test_key_change_inner_jws_must_name_key_change_and_this_account(
    flow: Flow, acme: RawAcme
) -> None:
    """§7.3.5: the inner JWS's url is the outer one; its account is the signer's."""
    await flow.account()
    url, new = f"{acme.base}/acme/key-change", new_key()
    old = jose.jwk_from_key(flow.key)
    elsewhere = jose.sign(new, {"account": flow.kid, "oldKey": old}, url=flow.kid, nonce=None)
    resp = await acme.post(url, elsewhere, flow.key, flow.kid)
    assert (resp.status, resp.problem_type) == (400, "malformed")
    other = Flow(acme, flow.responder)
    await other.account()
    theirs = jose.sign(new, {"account": other.kid, "oldKey": old}, url=url, nonce=None)
    resp = await acme.post(url, theirs, flow.key, flow.kid)
    assert (resp.status, resp.problem_type) == (403, "unauthorized")


async def test_key_change_to_a_key_in_use_is_conflict(flow: Flow, acme: RawAcme) -> None:
    other = Flow(acme, flow.responder)
    await other.account()
    await flow.account()
    url = f"{acme.base}/acme/key-change"
    inner = jose.sign(
        other.key, {"account": flow.kid, "oldKey": jose.jwk_from_key(flow.key)}, url=url, nonce=None
    )
    resp = await acme.post(url, inner, flow.key, flow.kid)
    assert resp.status == 409


async def test_authorization_reuse_and_deactivation(flow: Flow) -> None:
    await flow.issue("reuse.flow.test")
    second = (await flow.order("reuse.flow.test")).json()
    assert second["status"] == "ready"
    authz_url = second["authorizations"][0]
    deact = await flow.acme.post(authz_url, {"status": "deactivated"}, flow.key, flow.kid)
    assert deact.json()["status"] == "deactivated"
    third = (await flow.order("reuse.flow.test")).json()
    assert third["status"] == "pending" and third["authorizations"][0] != authz_url


async def test_wildcard_offers_only_dns01(flow: Flow) -> None:
    await flow.account()
    order = (await flow.order("*.wild.flow.test")).json()
    authz = (await flow.get(order["authorizations"][0])).json()
    assert authz["identifier"] == {"type": "dns", "value": "wild.flow.test"}
    assert authz["wildcard"] is True
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]


async def test_ip_identifier_offers_no_dns01(flow: Flow) -> None:
    await flow.account()
    refused = await flow.order("127.0.0.1")  # `classic`, like Let's Encrypt's, has no IPs
    assert refused.problem_type == "rejectedIdentifier"
    _, order = await flow.issue("127.0.0.1", profile="shortlived")
    cert = (await flow.get(order["certificate"])).body
    leaf = x509.load_pem_x509_certificates(cert)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


async def test_failed_validation_makes_order_invalid(flow: Flow, acme: RawAcme) -> None:
    await flow.account()
    resp = await flow.order("fails.flow.test")
    authz = (await flow.get(resp.json()["authorizations"][0])).json()
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    await acme.post(ch["url"], {}, flow.key, flow.kid)  # nothing served: 404
    await acme.app.authority.drain()
    order = (await flow.get(resp.header("location") or "")).json()
    assert order["status"] == "invalid"
    assert order["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    failed = (await flow.get(ch["url"])).json()
    assert failed["status"] == "invalid" and "404" in failed["error"]["detail"]


async def test_challenge_answer_carries_a_fast_validations_outcome(flow: Flow) -> None:
    """§7.5.1: the answer is the updated challenge; a validation that ends within
    challenge_wait is answered valid (or invalid), and the authorization is final at once."""
    await flow.account()
    order = (await flow.order("quick.flow.test", "quick-fails.flow.test")).json()
    outcomes = {}
    for authz_url in order["authorizations"]:
        authz = (await flow.get(authz_url)).json()
        name = authz["identifier"]["value"]
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        if name == "quick.flow.test":
            flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
        answer = await flow.acme.post(ch["url"], {}, flow.key, flow.kid)
        assert answer.status == 200 and 'rel="up"' in (answer.header("link") or "")
        outcomes[name] = (answer.json(), (await flow.get(authz_url)).json()["status"])
    (ok, ok_authz), (bad, bad_authz) = (
        outcomes["quick.flow.test"],
        outcomes["quick-fails.flow.test"],
    )
    assert (ok["status"], ok_authz) == ("valid", "valid") and "validated" in ok
    assert (bad["status"], bad_authz) == ("invalid", "invalid")
    assert bad["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "404" in bad["error"]["detail"]
    again = (await flow.get(ok["url"])).json()
    assert again == ok  # the answer is the challenge as recorded


async def test_challenge_answer_is_processing_when_validation_is_slow(
    flow: Flow, acme: RawAcme
) -> None:
    """A validation still going after challenge_wait is answered `processing` and ends
    in the background."""
    authority = acme.app.authority
    gate = asyncio.Event()
    real_validate = authority.validator.validate

    async def slow_validate(*args: Any, **kwargs: Any) -> int | None:
        await gate.wait()
        return await real_validate(*args, **kwargs)

    authority.validator.validate = slow_validate  # type: ignore[method-assign]
    authority.challenge_wait = 0.05
    await flow.account()
    order = (await flow.order("slow-ch.flow.test")).json()
    authz_url = order["authorizations"][0]
    authz = (await flow.get(authz_url)).json()
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
    answer = await acme.post(ch["url"], {}, flow.key, flow.kid)
    assert answer.json()["status"] == "processing"
    assert (await flow.get(authz_url)).json()["status"] == "pending"
    gate.set()
    await authority.drain()
    assert (await flow.get(authz_url)).json()["status"] == "valid"


async def test_two_concurrent_finalizes_issue_one_certificate(flow: Flow, ca: object) -> None:
    await flow.account()
    resp = await flow.order("race.flow.test")
    order_url = resp.header("location") or ""
    await flow.solve(resp.json())
    results = await asyncio.gather(
        *(flow.finalize(order_url, ("race.flow.test",)) for _ in range(4))
    )
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 1, [r.body for r in results]
    assert all(r.problem_type == "orderNotReady" for r in results if r.status != 200)
    from acmekit.server.schema import certificates

    with flow.acme.app.authority.store.engine.begin() as conn:
        rows = conn.execute(certificates.select()).all()
    assert len(rows) == 1 and rows[0].pem is not None


async def test_processing_state_has_retry_after(flow: Flow, acme: RawAcme) -> None:
    authority = acme.app.authority
    gate = asyncio.Event()
    real_sign = authority.sign

    async def slow_sign(*args: object) -> x509.Certificate:
        await gate.wait()
        return await real_sign(*args)  # type: ignore[arg-type]

    authority.sign = slow_sign
    authority.finalize_wait = 0.05
    await flow.account()
    resp = await flow.order("slow.flow.test")
    order_url = resp.header("location") or ""
    await flow.solve(resp.json())
    fin = await flow.finalize(order_url, ("slow.flow.test",))
    assert fin.json()["status"] == "processing"
    assert fin.header("retry-after") == "1"
    polled = await flow.get(order_url)
    assert polled.json()["status"] == "processing" and polled.header("retry-after") == "1"
    gate.set()
    await authority.drain()
    assert (await flow.get(order_url)).json()["status"] == "valid"


async def _cert_der(flow: Flow, order: dict[str, object]) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = (await flow.get(str(order["certificate"]))).body
    return x509.load_pem_x509_certificates(pem)[0].public_bytes(Encoding.DER)


async def test_revoke_by_account_then_already_revoked(flow: Flow, acme: RawAcme) -> None:
    _, order = await flow.issue("revoke.flow.test")
    der = await _cert_der(flow, order)
    url = f"{acme.base}/acme/revoke-cert"
    ok = await acme.post(url, {"certificate": jose.b64e(der), "reason": 4}, flow.key, flow.kid)
    assert ok.status == 200, ok.body
    again = await acme.post(url, {"certificate": jose.b64e(der)}, flow.key, flow.kid)
    assert again.problem_type == "alreadyRevoked"


async def test_revoke_by_certificate_key(flow: Flow, acme: RawAcme) -> None:
    await flow.account()
    resp = await flow.order("keyrevoke.flow.test")
    order_url = resp.header("location") or ""
    await flow.solve(resp.json())
    cert_key, csr = make_csr("keyrevoke.flow.test")
    order = (await flow.get(order_url)).json()
    fin = await acme.post(order["finalize"], {"csr": jose.b64e(csr)}, flow.key, flow.kid)
    der = await _cert_der(flow, fin.json())
    url = f"{acme.base}/acme/revoke-cert"
    wrong = await acme.post(url, {"certificate": jose.b64e(der), "reason": 1}, new_key())
    assert wrong.status == 403 and wrong.problem_type == "unauthorized"
    ok = await acme.post(url, {"certificate": jose.b64e(der), "reason": 1}, cert_key)
    assert ok.status == 200, ok.body


async def test_revoke_by_other_account_with_authorizations(flow: Flow, acme: RawAcme) -> None:
    _, order = await flow.issue("shared.flow.test")
    der = await _cert_der(flow, order)
    other = Flow(acme, flow.responder)
    url = f"{acme.base}/acme/revoke-cert"
    await other.account()
    denied = await acme.post(url, {"certificate": jose.b64e(der)}, other.key, other.kid)
    assert denied.problem_type == "unauthorized"
    await other.issue("shared.flow.test")
    ok = await acme.post(url, {"certificate": jose.b64e(der)}, other.key, other.kid)
    assert ok.status == 200, ok.body


async def test_bad_revocation_reason(flow: Flow, acme: RawAcme) -> None:
    _, order = await flow.issue("reason.flow.test")
    der = await _cert_der(flow, order)
    url = f"{acme.base}/acme/revoke-cert"
    resp = await acme.post(url, {"certificate": jose.b64e(der), "reason": 7}, flow.key, flow.kid)
    assert resp.problem_type == "badRevocationReason"


# URLs a client POSTs a request to, not resources it reads: the directory's actions,
# renewalInfo (a base for RFC 9773's GET), and an order's finalize.
ACTIONS = {"newAccount", "newOrder", "revokeCert", "keyChange", "renewalInfo", "finalize"}
PEM_CHAIN = "application/pem-certificate-chain"


def _links(resp: Resp) -> list[tuple[str, str]]:
    """(rel, URL) of every Link header (RFC 8288)."""
    found = []
    for value in resp.headers.get("link", []):
        found += [(rel, url) for url, rel in re.findall(r'<([^>]*)>\s*;\s*rel="([^"]+)"', value)]
    return found


def _urls_in(doc: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, URL) of every URL in a JSON document, with the key it sits under."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _urls_in(v, k)
    elif isinstance(doc, list):
        for v in doc:
            yield from _urls_in(v, key)
    elif isinstance(doc, str) and doc.startswith("https://"):
        yield key, doc


def _endpoint(acme: RawAcme, url: str) -> paths.Endpoint:
    path = url.removeprefix(acme.base)
    found = [e for e in vars(paths).values() if isinstance(e, paths.Endpoint)]
    return next(e for e in found if e.pattern.fullmatch(path))


async def _walk(flow: Flow, start: list[str]) -> dict[str, Resp]:
    """POST-as-GET to every URL reachable from `start` through Location and Link headers
    and the URLs in JSON bodies, but the ACTIONS."""
    seen: dict[str, Resp] = {}
    todo = list(start)
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        resp = seen[url] = await flow.get(url)
        todo += [u for _, u in _links(resp)] + resp.headers.get("location", [])
        if resp.header("content-type") == "application/json":
            todo += [u for key, u in _urls_in(resp.json()) if key not in ACTIONS]
    return seen


async def test_every_resource_the_ca_links_to_answers_post_as_get(
    flow: Flow, acme: RawAcme
) -> None:
    """RFC 8555 §6.3 and §7.4.2: every resource is read with POST-as-GET; the issuer
    certificate (a certificate's Link rel="up") too, as acmez-based clients read it."""
    order_url, _ = await flow.issue("walk.flow.test")
    seen = await _walk(flow, [f"{acme.base}/directory", flow.kid, order_url])
    kinds = {_endpoint(acme, url): url for url in seen}
    assert set(kinds) == {
        paths.DIRECTORY, paths.NEW_NONCE, paths.ACCOUNT, paths.ACCOUNT_ORDERS, paths.ORDER,
        paths.AUTHZ, paths.CHALLENGE, paths.CERTIFICATE, paths.ISSUER_CERT,
    }  # fmt: skip
    for url, resp in seen.items():
        assert resp.status == 200, (url, resp.body)
        assert ("index", f"{acme.base}/directory") in _links(resp)
        kind = _endpoint(acme, url)
        if kind in (paths.CERTIFICATE, paths.ISSUER_CERT):
            assert resp.header("content-type") == PEM_CHAIN
            assert x509.load_pem_x509_certificates(resp.body)
        elif kind == paths.NEW_NONCE:
            assert resp.header("replay-nonce") and resp.body == b""
        else:
            assert resp.header("content-type") == "application/json"
    cert = seen[kinds[paths.CERTIFICATE]]
    assert ("up", kinds[paths.ISSUER_CERT]) in _links(cert)
    issuer = x509.load_pem_x509_certificate(seen[kinds[paths.ISSUER_CERT]].body)
    assert x509.load_pem_x509_certificates(cert.body)[0].issuer == issuer.subject
    challenge = seen[kinds[paths.CHALLENGE]]
    assert ("up", kinds[paths.AUTHZ]) in _links(challenge)


async def test_plain_get_where_the_ca_allows_it(flow: Flow, acme: RawAcme) -> None:
    """A plain GET reads the directory, newNonce and certificates; any other resource
    answers it with 405 and says POST is allowed (§6.3)."""
    order_url, _ = await flow.issue("get.flow.test")
    seen = await _walk(flow, [flow.kid, order_url])
    for url in seen:
        kind = _endpoint(acme, url)
        resp = await acme.request("GET", url)
        if kind in (paths.DIRECTORY, paths.CERTIFICATE, paths.ISSUER_CERT):
            assert resp.status == 200, url
        elif kind == paths.NEW_NONCE:
            assert resp.status == 204
        else:
            assert (resp.status, resp.header("allow")) == (405, "POST"), url


def _but_the_nonce(resp: Resp) -> dict[str, list[str]]:
    return {k: v for k, v in resp.headers.items() if k != "replay-nonce"}


async def test_head_is_answered_wherever_get_is(flow: Flow, acme: RawAcme) -> None:
    """RFC 9110 §9.1: HEAD wherever GET is served; §9.3.2: GET's status and headers,
    Content-Length included, without the content. newNonce keeps its 200 (§7.2)."""
    order_url, _ = await flow.issue("head.flow.test")
    seen = await _walk(flow, [flow.kid, order_url])
    for url in seen:
        kind = _endpoint(acme, url)
        get, head = await acme.request("GET", url), await acme.request("HEAD", url)
        assert head.body == b"", url
        if kind == paths.NEW_NONCE:
            assert (get.status, head.status) == (204, 200)
            assert head.header("cache-control") == "no-store"
        elif kind in (paths.DIRECTORY, paths.CERTIFICATE, paths.ISSUER_CERT):
            assert head.status == get.status == 200, url
            assert _but_the_nonce(head) == _but_the_nonce(get), url
            assert head.header("content-length") == str(len(get.body)), url
        else:
            assert (head.status, head.header("allow")) == (405, "POST"), url
    wrong = await acme.request("PUT", f"{acme.base}/directory")
    assert (wrong.status, wrong.header("allow")) == (405, "GET, HEAD, POST")


async def test_post_as_get_to_a_challenge_only_reads_it(flow: Flow) -> None:
    """§7.5.1: a challenge is answered with `{}`; an empty payload leaves it pending."""
    await flow.account()
    order = (await flow.order("read.flow.test")).json()
    authz = (await flow.get(order["authorizations"][0])).json()
    for ch in authz["challenges"]:
        read = await flow.get(ch["url"])
        assert (read.status, read.json()["status"]) == (200, "pending")
    assert (await flow.get(order["authorizations"][0])).json()["status"] == "pending"


async def test_post_as_get_must_have_an_empty_payload(flow: Flow, acme: RawAcme) -> None:
    await flow.account()
    for url in (f"{acme.base}/directory", f"{acme.base}/acme/issuer-cert"):
        resp = await acme.post(url, {}, flow.key, flow.kid)
        assert (resp.status, resp.problem_type) == (400, "malformed"), url


@pytest.mark.parametrize("reason", [True, 1.0, "1"], ids=["true", "float", "string"])
async def test_revocation_reason_of_another_json_type_is_malformed(
    flow: Flow, acme: RawAcme, reason: object
) -> None:
    _, order = await flow.issue("reasontype.flow.test")
    der = await _cert_der(flow, order)
    url = f"{acme.base}/acme/revoke-cert"
    doc = {"certificate": jose.b64e(der), "reason": reason}
    resp = await acme.post(url, doc, flow.key, flow.kid)
    assert (resp.status, resp.problem_type) == (400, "malformed"), resp.body
    assert "reason" in resp.json()["detail"]
    # Nothing was revoked: the certificate can still be revoked, for a real reason.
    ok = await acme.post(url, {"certificate": jose.b64e(der), "reason": 4}, flow.key, flow.kid)
    assert ok.status == 200, ok.body
