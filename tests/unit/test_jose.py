"""JWS/JWK: round trips, thumbprints (RFC 7638 §3.1 example), and refusals."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acmekit.protocol import jose
from acmekit.protocol.problems import AcmeError, ProblemType

KEYS = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "RS256": lambda: rsa.generate_private_key(65537, 2048),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_sign_then_verify_round_trip(alg: str) -> None:
    key = KEYS[alg]()
    signed = jose.sign(key, {"hello": 1}, url="https://x/acme", nonce="n1")
    jws = jose.parse_jws(json.dumps(signed).encode())
    assert jws.alg == alg
    assert jws.protected["url"] == "https://x/acme"
    assert jws.payload_json() == {"hello": 1}
    public = jose.key_from_jwk(jws.protected["jwk"])
    assert jws.verify(public)
    assert jose.thumbprint(public) == jose.thumbprint(key)


def test_rfc7638_thumbprint_example() -> None:
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t"
        "Soc_"
        "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
        "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jose.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_tampered_payload_fails_verification() -> None:
    key = KEYS["ES256"]()
    signed = jose.sign(key, {"a": 1}, url="u", nonce="n")
    signed["payload"] = jose.b64e(b'{"a":2}')
    jws = jose.parse_jws(json.dumps(signed))
    assert not jws.verify(key.public_key())


def test_alg_must_fit_the_key() -> None:
    key = KEYS["ES256"]()
    signed = jose.sign(key, {}, url="u", nonce="n")
    jws = jose.parse_jws(json.dumps(signed))
    forged = jose.Jws({**jws.protected, "alg": "ES384"}, jws.protected_b64, "", jws.signature)
    assert not forged.verify(key.public_key())


def test_post_as_get_has_empty_payload() -> None:
    key = KEYS["ES256"]()
    jws = jose.parse_jws(json.dumps(jose.sign(key, None, url="u", nonce="n", kid="k")))
    assert jws.payload_b64 == ""
    assert jws.payload_json() is None
    assert "jwk" not in jws.protected and jws.protected["kid"] == "k"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"protected": 1, "payload": "", "signature": ""}',
        b'{"protected": "e30", "payload": "", "signature": "a=b"}',
        b'{"protected": "bm90IGpzb24", "payload": "", "signature": ""}',
        b'{"signatures": [], "protected": "e30", "payload": "", "signature": ""}',
    ],
)
def test_malformed_jws_is_malformed(body: bytes) -> None:
    with pytest.raises(AcmeError) as err:
        jose.parse_jws(body)
    assert err.value.problem.type == ProblemType.MALFORMED


def test_private_jwk_is_refused() -> None:
    with pytest.raises(AcmeError) as err:
        jose.key_from_jwk({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"})
    assert err.value.problem.type == ProblemType.BAD_PUBLIC_KEY


def test_unsupported_curve_is_bad_public_key() -> None:
    with pytest.raises(AcmeError) as err:
        jose.key_from_jwk({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})
    assert err.value.problem.type == ProblemType.BAD_PUBLIC_KEY


def test_eab_binding_verifies_with_the_hmac_key() -> None:
    account = KEYS["ES256"]()
    eab = jose.eab_sign(account, "kid-1", b"secret-key-material", "https://x/new-account")
    jws = jose.parse_jws(json.dumps(eab))
    assert jws.protected == {"alg": "HS256", "kid": "kid-1", "url": "https://x/new-account"}
    assert jose.eab_verify(jws, b"secret-key-material")
    assert not jose.eab_verify(jws, b"other")
    assert jose.thumbprint(jws.payload_json()) == jose.thumbprint(account)


@pytest.mark.parametrize(
    "text",
    ["AQ==", "AQ=", "AR", "AQ A", "AQ\n", "+/8", "AQ!", "A", "ABCDE", "AQ%3D"],
    ids=[
        "padding",
        "short padding",
        "spare bits",
        "space",
        "newline",
        "standard alphabet",
        "stray character",
        "one character",
        "five characters",
        "percent-encoded",
    ],
)
def test_b64d_is_strict(text: str) -> None:
    with pytest.raises(AcmeError) as info:
        jose.b64d(text)
    assert info.value.problem.type == ProblemType.MALFORMED


@pytest.mark.parametrize("data", [b"", b"\x01", b"\xff\xfe", b"\x00\x01\x02", bytes(range(256))])
def test_b64d_reads_what_b64e_writes(data: bytes) -> None:
    assert jose.b64d(jose.b64e(data)) == data


@pytest.mark.parametrize("crit", [["b64"], ["exp"], [], "b64"])
def test_critical_header_parameters_are_refused(crit: object) -> None:
    key = KEYS["ES256"]()
    header = {"alg": "ES256", "url": "u", "nonce": "n", "jwk": jose.jwk_from_key(key), "crit": crit}
    signed = jose._assemble(header, {}, lambda data: jose.raw_sign(key, "ES256", data))
    with pytest.raises(AcmeError) as info:
        jose.parse_jws(json.dumps(signed))
    assert info.value.problem.type == ProblemType.MALFORMED
    assert "critical" in info.value.problem.detail
