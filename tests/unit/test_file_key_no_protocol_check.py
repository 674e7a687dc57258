"""A file key is told from a key in a token without the runtime Protocol check.

`isinstance(key, ExternalKey)` on a runtime-checkable Protocol looks up each member of
the Protocol (100-200 µs on Python 3.11, twice per certificate before this), so the
signing path tests cryptography's private key types first (acmekit.server.signing)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import Issuer, load_or_create_issuer, new_serial, subscriber_builder
from acmekit.server.lint import Linter
from acmekit.server.signing import ExternalKey, ExternalPublicKey, is_external

NOW = datetime(2026, 3, 1, tzinfo=UTC)


class TokenKey:
    """What a PKCS#11 handle shows: no key material, a public key, sign and check."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def public_key(self) -> ExternalPublicKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        raise AssertionError("not signed in this test")

    def check(self) -> None:
        return None


@pytest.fixture
def protocol_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every `isinstance(x, ExternalKey)` made while the test runs."""
    checked: list[object] = []
    meta: Any = type(ExternalKey)
    original = meta.__instancecheck__

    def counting(cls: type, instance: object) -> bool:
        if cls is ExternalKey:
            checked.append(instance)
        return bool(original(cls, instance))

    monkeypatch.setattr(meta, "__instancecheck__", counting)
    yield checked


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        rsa.generate_private_key(65537, 2048),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["ec", "rsa", "ed25519"],
)
def test_a_file_key_is_not_external_and_asks_no_protocol_check(
    key: object, protocol_checks: list[object]
) -> None:
    assert not is_external(key)
    assert protocol_checks == []


def test_a_token_key_is_external() -> None:
    assert is_external(TokenKey())
    assert not is_external(object())  # neither: not a key at all


def test_signing_with_a_file_key_asks_no_protocol_check(
    tmp_path: Any, protocol_checks: list[object]
) -> None:
    issuer: Issuer = load_or_create_issuer(tmp_path / "state", NOW)
    builder = subscriber_builder(
        issuer,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        [Identifier(IdentifierType.DNS, "example.com")],
        serial=new_serial(),
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        crl_url="http://crl.example.com/1.crl",
        issuer_url="http://crl.example.com/issuer.der",
    )
    cert = Linter(enabled=False).sign(builder, issuer.intermediate_key)
    issuer.check_signer()
    assert cert.issuer == issuer.intermediate_cert.subject
    assert protocol_checks == []
