"""How often issuance encodes a public key: each P-256 encoding converts the point to
affine coordinates (a field inversion, some 35,000 instructions). finalize's CSR check
compares the CSR's key with the account key without encoding either."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acmekit.protocol import jose
from acmekit.protocol.csr import check_csr, csr_public_key, make_csr
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType

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
