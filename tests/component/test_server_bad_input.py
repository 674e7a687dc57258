"""Every error a client can cause is a problem document of the right type and status,
with a fresh Replay-Nonce and Link rel="index"; never a 500 (RFC 8555 §6.7)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit.protocol import jose
from acmekit_testkit.acme_raw import Flow, RawAcme, Resp, new_key
from acmekit_testkit.csr import make_csr

NEW_ACCOUNT = "https://ca.test/acme/new-account"
NEW_ORDER = "https://ca.test/acme/new-order"


def _header(signed: dict[str, str], **changes: Any) -> dict[str, str]:
    """Rewrite the protected header (the signature then no longer matters or matches)."""
    header = json.loads(jose.b64d(signed["protected"]))
    header.update(changes)
    header = {k: v for k, v in header.items() if v is not None}
    return {**signed, "protected": jose.b64e(json.dumps(header).encode())}


def _header_of(signed: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(jose.b64d(signed["protected"])))


def _resign_hs256(signed: dict[str, str]) -> dict[str, str]:
    import hashlib
    import hmac

    out = _header(signed, alg="HS256")
    mac = hmac.new(b"k", f"{out['protected']}.{out['payload']}".encode(), hashlib.sha256)
    return {**out, "signature": jose.b64e(mac.digest())}


async def _raw(acme: RawAcme, body: bytes, ctype: str = "application/jose+json") -> Resp:
    return await acme.request("POST", NEW_ACCOUNT, body, ctype)


Case = Callable[[RawAcme, Flow], Awaitable[Resp]]
TOS = {"termsOfServiceAgreed": True}
DEEP = b"[" * 20_000 + b"]" * 20_000  # deeper than json.loads can recurse

JWS_CASES: dict[str, tuple[Case, int, str]] = {
    "body is not JSON": (lambda a, f: _raw(a, b"{nope"), 400, "malformed"),
    "JWS missing signature": (
        lambda a, f: _raw(a, b'{"protected": "e30", "payload": ""}'),
        400,
        "malformed",
    ),
    "body nested too deep": (lambda a, f: _raw(a, DEEP), 400, "malformed"),
    "payload nested too deep": (lambda a, f: a.post(NEW_ACCOUNT, DEEP, f.key), 400, "malformed"),
    "protected header nested too deep": (
        lambda a, f: a.post(
            NEW_ACCOUNT, TOS, f.key, tamper=lambda s: {**s, "protected": jose.b64e(DEEP)}
        ),
        400,
        "malformed",
    ),
    "wrong content type": (lambda a, f: _raw(a, b"{}", "application/json"), 415, "malformed"),
    "oversized body": (lambda a, f: _raw(a, b"x" * (65 * 1024)), 413, "malformed"),
    "bad signature": (
        lambda a, f: a.post(NEW_ACCOUNT, TOS, f.key, tamper=lambda s: {**s, "signature": "AAAA"}),
        400,
        "malformed",
    ),
    "alg none": (
        lambda a, f: a.post(NEW_ACCOUNT, TOS, f.key, tamper=lambda s: _header(s, alg="none")),
        400,
        "badSignatureAlgorithm",
    ),
    "HS256": (
        lambda a, f: a.post(NEW_ACCOUNT, TOS, f.key, tamper=_resign_hs256),
        400,
        "badSignatureAlgorithm",
    ),
    "wrong url": (
        lambda a, f: a.post(
            NEW_ACCOUNT, TOS, f.key, tamper=lambda s: _header(s, url="https://ca.test/other")
        ),
        403,
        "unauthorized",
    ),
    "unknown critical header parameter": (
        lambda a, f: a.post(NEW_ACCOUNT, TOS, f.key, tamper=lambda s: _header(s, crit=["exp"])),
        400,
        "malformed",
    ),
    "nonce with padding": (
        lambda a, f: a.post(
            NEW_ACCOUNT, TOS, f.key, tamper=lambda s: _header(s, nonce=_header_of(s)["nonce"] + "=")
        ),
        400,
        "badNonce",
    ),
    "no nonce": (
        lambda a, f: a.post(NEW_ACCOUNT, TOS, f.key, tamper=lambda s: _header(s, nonce=None)),
        400,
        "badNonce",
    ),
    "forged nonce": (
        lambda a, f: a.post(NEW_ACCOUNT, TOS, f.key, nonce=jose.b64e(b"x" * 32)),
        400,
        "badNonce",
    ),
    "both jwk and kid": (
        lambda a, f: a.post(
            NEW_ACCOUNT, TOS, f.key, tamper=lambda s: _header(s, kid="https://ca.test/acme/acct/x")
        ),
        400,
        "malformed",
    ),
    "unknown kid": (
        lambda a, f: a.post(NEW_ORDER, {}, f.key, kid="https://ca.test/acme/acct/nobody"),
        400,
        "accountDoesNotExist",
    ),
    "kid where jwk is needed": (
        lambda a, f: a.post(NEW_ACCOUNT, TOS, f.key, kid="https://ca.test/acme/acct/x"),
        400,
        "malformed",
    ),
    "jwk where kid is needed": (lambda a, f: a.post(NEW_ORDER, {}, f.key), 400, "malformed"),
    "private key in jwk": (
        lambda a, f: a.post(
            NEW_ACCOUNT,
            TOS,
            f.key,
            tamper=lambda s: _header(
                s, jwk={**json.loads(jose.b64d(s["protected"]))["jwk"], "d": "AAAA"}
            ),
        ),
        400,
        "badPublicKey",
    ),
    "termsOfServiceAgreed as a string": (
        lambda a, f: a.post(NEW_ACCOUNT, {"termsOfServiceAgreed": "true"}, f.key),
        400,
        "malformed",
    ),
    "onlyReturnExisting as a number": (
        lambda a, f: a.post(NEW_ACCOUNT, {**TOS, "onlyReturnExisting": 1}, f.key),
        400,
        "malformed",
    ),
    "contact as a string": (
        lambda a, f: a.post(NEW_ACCOUNT, {**TOS, "contact": "mailto:a@b.test"}, f.key),
        400,
        "malformed",
    ),
    "newAccount payload an array": (
        lambda a, f: a.post(NEW_ACCOUNT, [TOS], f.key),
        400,
        "malformed",
    ),
    "non-mailto contact": (
        lambda a, f: a.post(NEW_ACCOUNT, {**TOS, "contact": ["tel:+1555"]}, f.key),
        400,
        "unsupportedContact",
    ),
    "broken email contact": (
        lambda a, f: a.post(NEW_ACCOUNT, {**TOS, "contact": ["mailto:nobody"]}, f.key),
        400,
        "invalidContact",
    ),
}


@pytest.mark.parametrize("name", sorted(JWS_CASES))
async def test_bad_request_gets_problem(name: str, acme: RawAcme, flow: Flow) -> None:
    case, status, ptype = JWS_CASES[name]
    resp = await case(acme, flow)
    assert (resp.status, resp.problem_type) == (status, ptype), resp.body
    assert resp.header("replay-nonce")
    assert 'rel="index"' in (resp.header("link") or "")


async def test_replayed_nonce_is_refused(acme: RawAcme, flow: Flow) -> None:
    nonce = await acme.nonce()
    first = await acme.post(NEW_ACCOUNT, TOS, flow.key, nonce=nonce)
    assert first.status == 201
    replay = await acme.post(NEW_ACCOUNT, TOS, flow.key, nonce=nonce)
    assert (replay.status, replay.problem_type) == (400, "badNonce")


@pytest.mark.parametrize(
    "value",
    ["trailing.dot.test.", "empty..label.test", "a.*.star.test", "*x.star.test", "10.0.0.1"],
)
async def test_bad_identifiers_are_rejected(value: str, flow: Flow) -> None:
    await flow.account()
    resp = await flow.acme.post(
        NEW_ORDER, {"identifiers": [{"type": "dns", "value": value}]}, flow.key, flow.kid
    )
    assert (resp.status, resp.problem_type) == (400, "rejectedIdentifier"), resp.body


async def test_unknown_identifier_type(flow: Flow) -> None:
    await flow.account()
    resp = await flow.acme.post(
        NEW_ORDER, {"identifiers": [{"type": "email", "value": "a@b.test"}]}, flow.key, flow.kid
    )
    assert resp.problem_type == "unsupportedIdentifier"


async def test_unknown_path_and_wrong_method(acme: RawAcme) -> None:
    missing = await acme.request("GET", "https://ca.test/nothing-here")
    assert (missing.status, missing.problem_type) == (404, "malformed")
    wrong = await acme.request("GET", NEW_ORDER)
    assert wrong.status == 405 and wrong.header("allow") == "POST"


async def test_post_as_get_with_payload_is_malformed(flow: Flow) -> None:
    await flow.account()
    order_url = (await flow.order("pag.bad.test")).header("location") or ""
    resp = await flow.acme.post(order_url, {"x": 1}, flow.key, flow.kid)
    assert resp.problem_type == "malformed"


async def test_other_accounts_order_is_unauthorized(flow: Flow, acme: RawAcme) -> None:
    await flow.account()
    order_url = (await flow.order("mine.bad.test")).header("location") or ""
    other = Flow(acme, flow.responder)
    await other.account()
    resp = await other.get(order_url)
    assert (resp.status, resp.problem_type) == (403, "unauthorized")


async def test_finalize_before_ready(flow: Flow) -> None:
    await flow.account()
    order_url = (await flow.order("early.bad.test")).header("location") or ""
    resp = await flow.finalize(order_url, ("early.bad.test",))
    assert (resp.status, resp.problem_type) == (403, "orderNotReady")


async def test_finalize_twice(flow: Flow) -> None:
    order_url, _ = await flow.issue("twice.bad.test")
    resp = await flow.finalize(order_url, ("twice.bad.test",))
    assert (resp.status, resp.problem_type) == (403, "orderNotReady")


def _csr_with_key(key: Any, *names: str) -> bytes:
    sans = [x509.DNSName(n) for n in names]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


async def _ready_order(flow: Flow, name: str) -> str:
    await flow.account()
    resp = await flow.order(name)
    await flow.solve(resp.json())
    return resp.header("location") or ""


CSR_CASES: dict[str, tuple[Callable[[Flow], bytes], str]] = {
    "garbage": (lambda f: b"\x30\x03\x02\x01", "badCSR"),
    "other names": (lambda f: make_csr("other.bad.test")[1], "badCSR"),
    "extra name": (lambda f: make_csr("csr.bad.test", "extra.bad.test")[1], "badCSR"),
    "RSA 1024": (
        lambda f: _csr_with_key(rsa.generate_private_key(65537, 1024), "csr.bad.test"),
        "badPublicKey",
    ),
    "P-521": (
        lambda f: _csr_with_key(ec.generate_private_key(ec.SECP521R1()), "csr.bad.test"),
        "badPublicKey",
    ),
    "account key": (lambda f: _csr_with_key(f.key, "csr.bad.test"), "badCSR"),
}


@pytest.mark.parametrize("name", sorted(CSR_CASES))
async def test_bad_csr(name: str, flow: Flow) -> None:
    make, ptype = CSR_CASES[name]
    order_url = await _ready_order(flow, "csr.bad.test")
    order = (await flow.get(order_url)).json()
    resp = await flow.acme.post(
        order["finalize"], {"csr": jose.b64e(make(flow))}, flow.key, flow.kid
    )
    assert (resp.status, resp.problem_type) == (400, ptype), resp.body
    # A refused CSR leaves the order ready for a good one.
    assert (await flow.get(order_url)).json()["status"] == "ready"


async def test_deactivated_account_key_cannot_register_again(flow: Flow, acme: RawAcme) -> None:
    await flow.account()
    await acme.post(flow.kid, {"status": "deactivated"}, flow.key, flow.kid)
    resp = await flow.account()
    assert (resp.status, resp.problem_type) == (403, "unauthorized")


async def test_new_key_for_each_case_is_independent() -> None:
    assert jose.thumbprint(new_key()) != jose.thumbprint(new_key())


async def _typed_payloads(flow: Flow) -> dict[str, tuple[str, Any]]:
    """For each account-bound message, a URL and a payload with one field of the wrong
    JSON type."""
    await flow.account()
    resp = await flow.order("types.bad.test")
    order = resp.json()
    authz_url = order["authorizations"][0]
    challenge_url = (await flow.get(authz_url)).json()["challenges"][0]["url"]
    inner = jose.sign(
        new_key(), {"account": 7, "oldKey": {}}, url=f"{flow.acme.base}/acme/key-change", nonce=None
    )
    ident = {"type": "dns", "value": 5}
    return {
        "newOrder identifier value": (NEW_ORDER, {"identifiers": [ident]}),
        "newOrder identifiers an object": (NEW_ORDER, {"identifiers": {"type": "dns"}}),
        "newOrder profile": (
            NEW_ORDER,
            {"identifiers": [ident | {"value": "a.test"}], "profile": 1},
        ),
        "finalize csr": (order["finalize"], {"csr": 12}),
        "challenge response an array": (challenge_url, []),
        "authorization status": (authz_url, {"status": True}),
        "account contact": (flow.kid, {"contact": [1]}),
        "account status": (flow.kid, {"status": False}),
        "keyChange inner account": (f"{flow.acme.base}/acme/key-change", inner),
    }


async def test_fields_of_the_wrong_json_type_are_malformed(flow: Flow) -> None:
    for name, (url, payload) in (await _typed_payloads(flow)).items():
        resp = await flow.acme.post(url, payload, flow.key, flow.kid)
        assert (resp.status, resp.problem_type) == (400, "malformed"), (name, resp.body)
        assert "must be a JSON" in resp.json()["detail"], (name, resp.body)
