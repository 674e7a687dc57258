"""Whatever a client sends as a JWS, only an AcmeError (a problem document) comes back.

Properties over the JWS parser (`protocol.jose`) and the server's authentication step
(`server.auth`), with structured input as well as random bytes: JSON documents whose
members have the wrong types, mutated base64url, deeply nested JSON, junk JWKs in
headers that are validly signed with a fresh nonce, so every check after the signature
and nonce is reached too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from acmekit.protocol.jose import (
    b64d,
    b64e,
    eab_verify,
    jwk_from_key,
    key_from_jwk,
    parse_jws,
    sign,
)
from acmekit.protocol.problems import AcmeError
from acmekit.server.auth import Authenticator, external_account_binding
from acmekit.server.config import NonceScope
from acmekit.server.nonces import NonceService
from acmekit.server.store import Store

URL = "https://ca.test/acme/new-order"
PREFIX = "https://ca.test/acme/acct/"
KEY = ec.generate_private_key(ec.SECP256R1())
STORE = Store.from_url("sqlite:///:memory:")
NONCES = NonceService(STORE, lambda: datetime(2026, 12, 1, tzinfo=UTC), scope=NonceScope.PROCESS)
AUTH = Authenticator(STORE, NONCES)
FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values of every shape, including the wrong type wherever a member is read.
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
members = st.sampled_from(
    ["alg", "jwk", "kid", "nonce", "url", "crit", "b64", "kty", "crv", "x", "y", "n", "e", "d"]
)
# Valid-looking base64url of JSON, and the same text with a character changed.
b64_json = json_values.map(lambda v: b64e(json.dumps(v).encode()))
b64_mutated = st.tuples(b64_json, st.integers(0, 200), st.characters()).map(
    lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
)
b64_texts = b64_json | b64_mutated | st.text(max_size=30)


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEEP = [nested(100_000), deep_object(100_000)]


def only_acme_errors(call: Any, *args: Any, **kw: Any) -> Any:
    """Run `call`; anything but an AcmeError escaping it fails the property."""
    try:
        return call(*args, **kw)
    except AcmeError:
        return None


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(DEEP[0].encode())
@example(DEEP[1].encode())
@example(
    b'{"protected": "' + b64e(DEEP[0].encode()).encode() + b'", "payload": "", "signature": ""}'
)
def test_any_body_parses_or_is_malformed(body: bytes) -> None:
    jws = only_acme_errors(parse_jws, body)
    if jws is not None:
        only_acme_errors(jws.payload_json)


@FAST
@given(
    st.integers(1, 200_000),
    st.sampled_from(["protected", "payload", "body"]),
    st.sampled_from(["[", '{"a":']),
)
def test_json_nested_to_any_depth(depth: int, where: str, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    deep = opener * depth + ("1" if opener != "[" else "") + closer * depth
    if where == "body":
        body = deep.encode()
    else:
        other = "payload" if where == "protected" else "protected"
        doc = {where: b64e(deep.encode()), other: b64e(b'{"alg":"ES256"}'), "signature": ""}
        body = json.dumps(doc).encode()
    jws = only_acme_errors(parse_jws, body)
    if jws is not None:
        only_acme_errors(jws.payload_json)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["protected", "payload", "signature", "header"]), json_values | b64_texts
    )
)
@example({"payload": "\x80", "protected": "e30", "signature": ""})  # once UnicodeEncodeError
def test_any_flattened_document_parses_or_is_malformed(doc: dict[str, Any]) -> None:
    jws = only_acme_errors(parse_jws, json.dumps(doc).encode())
    if jws is not None:
        only_acme_errors(jws.payload_json)
        only_acme_errors(eab_verify, jws, b"k" * 32)
        only_acme_errors(jws.verify, KEY.public_key())


@FAST
@given(b64_texts | json_values)
def test_b64d_decodes_or_is_malformed(text: Any) -> None:
    only_acme_errors(b64d, text)


@FAST
@given(json_values | st.dictionaries(members, json_values | b64_texts, max_size=5))
@example({"kty": "EC", "crv": ["P-256"]})
@example({"kty": "EC", "crv": {"a": 1}, "x": "", "y": ""})
@example({"kty": "RSA", "e": "AQAB", "n": "AA"})
@example({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})
def test_any_jwk_is_a_key_or_a_problem(jwk: Any) -> None:
    only_acme_errors(key_from_jwk, jwk)


def signed_with_header(header: dict[str, Any], payload: bytes) -> bytes:
    """A JWS over `header` (which may be junk) with a good signature by KEY."""
    from acmekit.protocol.jose import raw_sign

    protected = b64e(json.dumps(header).encode())
    body = b64e(payload)
    sig = raw_sign(KEY, "ES256", f"{protected}.{body}".encode())
    return json.dumps({"protected": protected, "payload": body, "signature": b64e(sig)}).encode()


@FAST
@given(
    st.dictionaries(members, json_values | b64_texts, max_size=6),
    st.booleans(),
    st.binary(max_size=50) | json_values.map(lambda v: json.dumps(v).encode()),
)
@example({"alg": "ES256", "jwk": {"kty": "EC", "crv": [1]}}, True, b"{}")
@example({"alg": "ES256", "kid": ["x"]}, True, b"{}")
def test_authentication_ends_in_a_problem_or_an_account(
    header: dict[str, Any], fresh: bool, payload: bytes
) -> None:
    if fresh:  # so the checks after the nonce are reached
        header = {"url": URL, "nonce": NONCES.issue(), **header}
    auth = only_acme_errors(
        AUTH.authenticate, signed_with_header(header, payload), URL, PREFIX, signer="either"
    )
    if auth is not None:
        only_acme_errors(lambda: auth.payload)
        only_acme_errors(external_account_binding, only_acme_errors(lambda: auth.payload), URL)


@FAST
@given(json_values, st.sampled_from(["externalAccountBinding", "x"]))
def test_external_account_binding_of_any_payload(value: Any, member: str) -> None:
    only_acme_errors(external_account_binding, {member: value}, URL)


def test_a_payload_that_is_not_ascii_is_malformed_after_the_nonce() -> None:
    header = b64e(
        json.dumps(
            {"alg": "ES256", "url": URL, "nonce": NONCES.issue(), "jwk": jwk_from_key(KEY)}
        ).encode()
    )
    body = json.dumps({"protected": header, "payload": "é", "signature": ""}).encode()
    try:
        AUTH.authenticate(body, URL, PREFIX, signer="either")
    except AcmeError as err:
        assert err.problem.type == "urn:ietf:params:acme:error:malformed"
    else:
        raise AssertionError("accepted")


def test_a_good_request_still_authenticates() -> None:
    body = json.dumps(sign(KEY, {"a": 1}, url=URL, nonce=NONCES.issue())).encode()
    auth = AUTH.authenticate(body, URL, PREFIX, signer="jwk")
    assert auth.payload == {"a": 1}
