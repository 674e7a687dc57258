"""How often issuance encodes a public key: each P-256 encoding converts the point to
affine coordinates (a field inversion, some 35,000 instructions). finalize's CSR check
compares the CSR's key with the account key without encoding either; the key rule's
blocklist hash and the certificate's Subject Key Identifier share one encoding."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from acmekit.protocol import jose
from acmekit.protocol.csr import check_csr, csr_public_key, make_csr
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.ca import (
    Issuer,
    LeafShape,
    key_identifier,
    load_or_create_issuer,
    sign_builder,
    subscriber_builder,
)
from acmekit.server.keycheck import (
    SPKI_KEPT,
    KeyPolicy,
    KeyPurpose,
    StaticBlocklist,
    check_key,
    spki_der,
    spki_sha256,
)
from acmekit.server.signing import read_tlv

NAME = Identifier(IdentifierType.DNS, "k.example.test")
NOW = datetime(2030, 2, 3, tzinfo=UTC)


@contextmanager
def counting(name: str) -> Iterator[list[int]]:
    """Calls of built-in (C) functions or methods named `name` in the block."""
    count = [0]

    def profile(_frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and getattr(arg, "__name__", None) == name:
            count[0] += 1

    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(None)


def no_rule(_key: object) -> None:
    return None


def test_check_csr_encodes_no_key() -> None:
    account = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = make_csr(ec.generate_private_key(ec.SECP256R1()), [NAME.value])
    with counting("public_bytes") as encodings:
        check_csr(der, [NAME], account, no_rule)
    assert encodings[0] == 0


KEYS: dict[str, Callable[[], Any]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa": lambda: rsa.generate_private_key(65537, 2048),
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_the_account_key_is_found_as_the_jws_carried_it(kind: str) -> None:
    """The account key as authentication has it (parsed from its JWK, another object)
    is still the CSR's key."""
    key = KEYS[kind]()
    account = jose.key_from_jwk(jose.jwk_from_key(key.public_key()))
    assert account is not key.public_key()
    with pytest.raises(AcmeError) as info:
        check_csr(make_csr(key, [NAME.value]), [NAME], account, no_rule)
    assert info.value.problem.type == ProblemType.BAD_CSR
    assert "account key" in info.value.problem.detail


@pytest.mark.parametrize("account_kind", ["p256", "p384", "rsa", "ed25519"])
def test_another_account_key_of_any_kind_passes(account_kind: str) -> None:
    if account_kind == "ed25519":
        account: jose.PublicKey = ed25519.Ed25519PrivateKey.generate().public_key()
    else:
        account = KEYS[account_kind]().public_key()
    der = make_csr(ec.generate_private_key(ec.SECP256R1()), [NAME.value])
    check_csr(der, [NAME], account, no_rule)


def test_the_certificate_finds_the_key_the_check_parsed() -> None:
    """finalize's check parses the CSR's key; the certificate's making
    (Authority._builder) asks `csr_public_key` for it and gets that key, not a second
    parse."""
    der = make_csr(ec.generate_private_key(ec.SECP256R1()), [NAME.value])
    account = ec.generate_private_key(ec.SECP256R1()).public_key()
    csr = check_csr(der, [NAME], account, no_rule)
    with counting("public_key") as parses:
        key = csr_public_key(csr)
    assert parses[0] == 0
    assert key == csr.public_key()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(Path(tmp_path_factory.mktemp("ca")), NOW)


def the_key_rule(key: Any) -> None:
    """The CA's key rule for a certificate key, with a blocklist to hash the key for."""
    check_key(key, KeyPolicy(), StaticBlocklist(), purpose=KeyPurpose.CERTIFICATE)


@pytest.mark.parametrize("ahead", [False, True], ids=["sqlite", "blocklist-read-ahead"])
@pytest.mark.parametrize("kind", sorted(KEYS))
def test_finalize_and_the_certificate_encode_the_csr_key_once(
    issuer: Issuer, kind: str, ahead: bool
) -> None:
    """The key rule's blocklist hash, the hash of the read sent ahead on PostgreSQL
    (Policy.blocked_ahead) and the certificate's Subject Key Identifier: one encoding."""
    der = make_csr(KEYS[kind](), [NAME.value])
    account = ec.generate_private_key(ec.SECP256R1()).public_key()
    with counting("public_bytes") as encodings:
        if ahead:
            spki_sha256(csr_public_key(x509.load_der_x509_csr(der)))
        csr = check_csr(der, [NAME], account, the_key_rule)
        builder = subscriber_builder(
            issuer,
            csr_public_key(csr),
            [NAME],
            serial=(1 << 126) | 3,
            not_before=NOW,
            not_after=NOW + timedelta(days=90),
            crl_url=None,
            shape=LeafShape(),
        )
    assert encodings[0] == 1
    ski = sign_builder(builder, issuer).extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(csr.public_key())


def test_each_key_gets_its_own_encoding() -> None:
    """Kept by the key object: another key never gets a kept key's bytes, and keys
    past the kept number are encoded again, correctly."""
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(SPKI_KEPT + 3)]
    keys.append(rsa.generate_private_key(65537, 2048).public_key())
    for _ in range(2):
        for key in keys:
            assert spki_der(key) == key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
    again = jose.key_from_jwk(jose.jwk_from_key(keys[-1]))
    assert spki_der(again) == spki_der(keys[-1])


def _compressed(key: ec.EllipticCurvePublicKey) -> ec.EllipticCurvePublicKey:
    """The same key parsed from a SubjectPublicKeyInfo holding its compressed point."""
    der = spki_der(key)
    _, start, _ = read_tlv(der)
    _, _, algorithm_end = read_tlv(der, start)
    short = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    body = der[start:algorithm_end] + bytes([0x03, len(short) + 1, 0]) + short
    return serialization.load_der_public_key(bytes([0x30, len(body)]) + body)  # type: ignore[return-value]


def test_the_subject_key_identifier_of_every_key_kind() -> None:
    """RFC 5280 §4.2.1.2 method (1) from the kept encoding, as cryptography computes it
    from the key: curves past P-256 (P-521's SPKI has a two-byte length), RSA of sizes
    that are no whole number of octets, the Edwards keys, and an EC key parsed from a
    compressed point (encoded again uncompressed, as `from_public_key` reads it)."""
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    keys: list[Any] = [
        p256,
        _compressed(p256),
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ec.generate_private_key(ec.SECP521R1()).public_key(),
        _compressed(ec.generate_private_key(ec.SECP521R1()).public_key()),
        rsa.generate_private_key(65537, 1025).public_key(),
        rsa.generate_private_key(3, 2049).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
        ed448.Ed448PrivateKey.generate().public_key(),
    ]
    for key in keys:
        assert key_identifier(key) == x509.SubjectKeyIdentifier.from_public_key(key)
    assert key_identifier(keys[1]) == key_identifier(p256)
