"""The CA tells key kinds apart without an ABC instance check on its request path.

`cryptography`'s key classes are ABCs, so `isinstance(key, ec.EllipticCurvePublicKey)`
runs `ABCMeta.__instancecheck__` (some 4,000 instructions). acmekit.protocol.keykinds
gives the same answers, remembered per concrete class."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acmekit.protocol import jose, keykinds
from acmekit.server.keycheck import KeyPolicy, KeyPurpose, check_key
from acmekit.server.signing import digest_for, file_digest, file_key, is_external

KEY_CLASSES = (
    ec.EllipticCurvePublicKey,
    ec.EllipticCurvePrivateKey,
    rsa.RSAPublicKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PublicKey,
    ed25519.Ed25519PrivateKey,
)
PRIVATE_KEYS = {
    "ec": ec.generate_private_key(ec.SECP256R1()),
    "p384": ec.generate_private_key(ec.SECP384R1()),
    "rsa": rsa.generate_private_key(65537, 2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
}
KEYS: list[object] = [
    *PRIVATE_KEYS.values(),
    *(key.public_key() for key in PRIVATE_KEYS.values()),
    object(),
    b"not a key",
]
CHECKS = [
    (keykinds.is_ec_public, ec.EllipticCurvePublicKey),
    (keykinds.is_rsa_public, rsa.RSAPublicKey),
    (keykinds.is_ed25519_public, ed25519.Ed25519PublicKey),
    (keykinds.is_ed25519_private, ed25519.Ed25519PrivateKey),
    (keykinds.is_file_key, keykinds.FILE_KEYS),
]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: type(k).__name__)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c[0].__name__)
def test_a_key_kind_is_what_isinstance_says(key: object, check: tuple[Any, Any]) -> None:
    helper, classes = check
    assert helper(key) is isinstance(key, classes)


@pytest.fixture
def abc_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[type]]:
    """Every ABC instance check against a key class made while the test runs."""
    checked: list[type] = []
    original = abc.ABCMeta.__instancecheck__

    def counting(cls: abc.ABCMeta, instance: object) -> bool:
        if cls in KEY_CLASSES:
            checked.append(cls)
        return original(cls, instance)

    monkeypatch.setattr(abc.ABCMeta, "__instancecheck__", counting)
    yield checked


def _ca_key_work(name: str, jws: jose.Jws) -> None:
    """What the CA does with keys per request (a JWS) and per certificate (the CSR's
    key, the issuer's key)."""
    private = PRIVATE_KEYS[name]
    public = private.public_key()
    assert jws.verify(public)
    if name == "ed25519":  # good for an account only
        check_key(public, KeyPolicy(), purpose=KeyPurpose.ACCOUNT)
    else:
        check_key(public, KeyPolicy())
        digest_for(public)  # type: ignore[arg-type]
    assert not is_external(private)
    file_digest(file_key(private))


@pytest.mark.parametrize("name", sorted(PRIVATE_KEYS))
def test_the_ca_key_work_asks_no_abc_check(name: str, abc_checks: list[type]) -> None:
    jws = jose.parse_jws(jose.sign(PRIVATE_KEYS[name], {"a": 1}, url="https://ca/x", nonce="n"))
    _ca_key_work(name, jws)  # the first sight of each class may ask
    abc_checks.clear()
    _ca_key_work(name, jws)
    assert abc_checks == []
