"""Key policy: sizes, exponent, curves, Ed25519 for accounts, weak moduli, the blocklist."""

from __future__ import annotations

import hashlib
import math
import secrets

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.keycheck import (
    KeyPolicy,
    KeyPurpose,
    StaticBlocklist,
    check_key,
    spki_sha256,
)
from acmekit_testkit.primes import is_probable_prime, next_prime, random_prime, rsa_key_from_primes

POLICY = KeyPolicy()


def rsa_public(n: int, e: int = 65537) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(e, n).public_key()


def refusal(key: object, policy: KeyPolicy = POLICY, **kwargs: object) -> str:
    """The detail of the badPublicKey problem check_key raises for `key`."""
    with pytest.raises(AcmeError) as info:
        check_key(key, policy, **kwargs)  # type: ignore[arg-type]
    assert info.value.problem.type == ProblemType.BAD_PUBLIC_KEY
    assert info.value.problem.status == 400
    return info.value.problem.detail


def modulus_with_factor(factor: int, bits: int = 2048) -> int:
    """factor * m of exactly `bits` bits, where m has no prime factor up to 751."""
    primorial = math.prod(p for p in range(752) if is_probable_prime(p))
    low, high = -(-(1 << (bits - 1)) // factor), (1 << bits) // factor
    while True:
        m = low + secrets.randbelow(high - low)
        if math.gcd(m, primorial) == 1:
            return factor * m


@pytest.fixture(scope="module")
def rsa2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def test_miller_rabin_is_right_on_known_numbers() -> None:
    assert [n for n in range(60) if is_probable_prime(n)] == [
        2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59,
    ]  # fmt: skip
    assert not is_probable_prime(561)  # a Carmichael number
    assert is_probable_prime(2**127 - 1)
    assert not is_probable_prime((2**61 - 1) * (2**89 - 1))
    assert next_prime(2**64) == 2**64 + 13


def test_rsa_2048_and_4096_are_accepted(rsa2048: rsa.RSAPrivateKey) -> None:
    check_key(rsa2048.public_key(), POLICY)
    check_key(rsa.generate_private_key(65537, 4096).public_key(), POLICY)
    check_key(rsa2048.public_key(), POLICY, purpose=KeyPurpose.ACCOUNT)


def test_rsa_1024_is_refused() -> None:
    detail = refusal(rsa.generate_private_key(65537, 1024).public_key())
    assert "RSA key size 1024 bits" in detail


def test_rsa_8192_is_refused() -> None:
    # Size is checked before anything else, so any odd 8192-bit modulus shows the rule.
    detail = refusal(rsa_public((1 << 8191) | 1))
    assert "RSA key size 8192 bits" in detail


def test_rsa_size_not_multiple_of_8_is_refused() -> None:
    detail = refusal(rsa_public((1 << 2048) | 1))
    assert "2049 bits" in detail
    assert "multiple of 8" in detail


def test_policy_bounds_are_honoured(rsa2048: rsa.RSAPrivateKey) -> None:
    detail = refusal(rsa2048.public_key(), KeyPolicy(rsa_min_bits=3072))
    assert "3072 to 4096" in detail


@pytest.mark.parametrize("exponent", [3, 17, 65539])
def test_rsa_exponent_other_than_65537_is_refused(
    rsa2048: rsa.RSAPrivateKey, exponent: int
) -> None:
    n = rsa2048.public_key().public_numbers().n
    detail = refusal(rsa_public(n, exponent))
    assert f"RSA public exponent {exponent}" in detail
    assert "65537" in detail


def test_modulus_with_small_factor_is_refused() -> None:
    # 751 is the largest prime checked (as Boulder); the cofactor has no small factor.
    n = modulus_with_factor(751)
    assert n.bit_length() == 2048
    detail = refusal(rsa_public(n))
    assert "divisible by the small prime 751" in detail


def test_modulus_with_factor_above_the_bound_is_not_a_small_factor() -> None:
    n = modulus_with_factor(757)
    assert n.bit_length() == 2048
    check_key(rsa_public(n), POLICY)
    detail = refusal(rsa_public(n), KeyPolicy(small_primes_bound=757))
    assert "small prime 757" in detail


def test_modulus_with_factor_three_names_it() -> None:
    n = modulus_with_factor(3)
    assert n.bit_length() == 2048
    assert "small prime 3" in refusal(rsa_public(n))


def test_fermat_factorable_modulus_is_refused() -> None:
    p = random_prime(1024)
    q = next_prime(p + secrets.randbits(400))
    n = p * q
    assert n.bit_length() == 2048
    detail = refusal(rsa_public(n))
    assert "Fermat" in detail


def test_fermat_rounds_bound_the_search() -> None:
    # Primes about 2^530 apart: ceil(sqrt(n)) is then ~2^(530*2-1024-3) = 2^33 below
    # (p+q)/2, far beyond 100 rounds, so the default policy does not see it.
    p = random_prime(1024)
    q = next_prime(p + 2**530)
    check_key(rsa_public(p * q), POLICY)


def test_real_rsa_key_with_private_numbers_close_primes_is_refused() -> None:
    p = random_prime(1024)
    private = rsa_key_from_primes(p, next_prime(p + 1000))
    assert "Fermat" in refusal(private.public_key())


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_p256_and_p384_are_accepted(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve).public_key()
    check_key(key, POLICY)
    check_key(key, POLICY, purpose="account")


def test_p521_is_refused() -> None:
    detail = refusal(ec.generate_private_key(ec.SECP521R1()).public_key())
    assert "ECDSA curve secp521r1 is not accepted" in detail
    assert "P-256, P-384" in detail


def test_p521_can_be_allowed_by_policy() -> None:
    policy = KeyPolicy(ec_curves=frozenset({"secp521r1"}))
    check_key(ec.generate_private_key(ec.SECP521R1()).public_key(), policy)
    refusal(ec.generate_private_key(ec.SECP256R1()).public_key(), policy)


def test_ec_point_off_the_curve_cannot_even_be_loaded() -> None:
    # The check relies on this: a key object always holds a point on its curve.
    good = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    with pytest.raises(ValueError):
        ec.EllipticCurvePublicNumbers(good.x, good.y + 1, ec.SECP256R1()).public_key()


def test_ed25519_is_an_account_key_only() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    check_key(key, POLICY, purpose=KeyPurpose.ACCOUNT)
    check_key(key, POLICY, purpose="account")
    assert "Ed25519 keys are not accepted as certificate keys" in refusal(key)


def test_ed25519_accounts_can_be_switched_off() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    policy = KeyPolicy(allow_ed25519_accounts=False)
    detail = refusal(key, policy, purpose=KeyPurpose.ACCOUNT)
    assert "Ed25519 keys are not accepted as account keys" in detail


def test_other_key_kinds_are_refused() -> None:
    assert "Ed448 keys are not accepted" in refusal(
        ed448.Ed448PrivateKey.generate().public_key(), purpose="account"
    )
    assert "X25519 keys are not accepted" in refusal(
        x25519.X25519PrivateKey.generate().public_key()
    )


def test_unknown_purpose_is_a_programming_error(rsa2048: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError):
        check_key(rsa2048.public_key(), POLICY, purpose="server")


def test_blocklisted_key_is_refused_for_both_purposes(rsa2048: rsa.RSAPrivateKey) -> None:
    blocked = ec.generate_private_key(ec.SECP256R1()).public_key()
    blocklist = StaticBlocklist(frozenset({spki_sha256(blocked)}))
    for purpose in KeyPurpose:
        detail = refusal(blocked, blocklist=blocklist, purpose=purpose)
        assert "key is blocked" in detail
        assert "on the CA's list of blocked keys" in detail
    check_key(rsa2048.public_key(), POLICY, blocklist)
    check_key(blocked, POLICY, StaticBlocklist())


def test_spki_sha256_is_the_hash_of_the_der_spki_and_survives_reencoding() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    reloaded = serialization.load_der_public_key(der)
    assert isinstance(reloaded, ec.EllipticCurvePublicKey)
    assert spki_sha256(reloaded) == spki_sha256(key) == hashlib.sha256(der).hexdigest()
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert spki_sha256(other) != spki_sha256(key)


def test_blocklist_lookup_ignores_hex_case() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert StaticBlocklist(frozenset({spki_sha256(key)})).contains(spki_sha256(key).upper())
