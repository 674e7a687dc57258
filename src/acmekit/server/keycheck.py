"""Key policy: which public keys the CA accepts, in CSRs and as account keys.

RFC 8555 §6.7 names the error (`badPublicKey`); §7.3 and §7.4 leave the choice of
acceptable keys to the CA. The rules follow Let's Encrypt's Boulder (`goodkey`):

- RSA: modulus of `rsa_min_bits` to `rsa_max_bits` bits, a multiple of 8; public exponent
  exactly 65537; no factor among the primes up to `small_primes_bound` (751, as Boulder);
  not factorable by `fermat_rounds` steps of Fermat's method, which finds moduli whose
  primes are close together (the flaw of CVE-2022-26320).
- ECDSA: only the curves in `ec_curves` (P-256, P-384). cryptography refuses a point that
  is not on its curve when the key is loaded, so a key object here is a valid point.
- Ed25519: only as an account key (RFC 8555 §6.2 lets the JWS use EdDSA, RFC 8037), and only
  when the policy allows it; never in a certificate.
- Any key whose SubjectPublicKeyInfo hash is on the blocklist (keys of certificates revoked
  for keyCompromise, RFC 5280 §5.3.1) is refused, for either purpose.

Every refusal is an AcmeError of type badPublicKey whose detail names the fault.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from acmekit.protocol.keykinds import is_ec_public, is_ed25519_public, is_rsa_public
from acmekit.protocol.problems import AcmeError, ProblemType, problem

RSA_EXPONENT = 65537
DEFAULT_EC_CURVES = frozenset({"secp256r1", "secp384r1"})
_NIST = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class KeyPurpose(StrEnum):
    """What a key is for: the public key of a certificate, or an ACME account's key."""

    CERTIFICATE = "certificate"
    ACCOUNT = "account"


@dataclass(frozen=True)
class KeyPolicy:
    rsa_min_bits: int = 2048
    rsa_max_bits: int = 4096
    ec_curves: frozenset[str] = field(default=DEFAULT_EC_CURVES)
    allow_ed25519_accounts: bool = True
    fermat_rounds: int = 100
    small_primes_bound: int = 751


class KeyBlocklist(Protocol):
    """Hashes (see `spki_sha256`) of keys the CA refuses, e.g. keys known to be compromised."""

    def contains(self, spki_hash: str) -> bool: ...

    def reason(self, spki_hash: str) -> str | None:
        """Why the key is blocked, for the badPublicKey detail; None when it is not."""
        ...


@dataclass(frozen=True)
class StaticBlocklist:
    """A fixed set of blocked SPKI hashes (lower-case hex)."""

    hashes: frozenset[str] = frozenset()

    def contains(self, spki_hash: str) -> bool:
        return spki_hash.lower() in self.hashes

    def reason(self, spki_hash: str) -> str | None:
        return "it is on the CA's list of blocked keys" if self.contains(spki_hash) else None


# Keys whose SubjectPublicKeyInfo encodings `spki_der` keeps: many finalizes in flight.
SPKI_KEPT = 64
# By the key object's id, with the object itself (kept alive, so its id names it alone):
# cryptography's key objects are neither hashable nor weakly referable.
_spki_kept: OrderedDict[int, tuple[CertificatePublicKeyTypes, bytes]] = OrderedDict()


def spki_der(key: CertificatePublicKeyTypes) -> bytes:
    """The key's DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7). The last `SPKI_KEPT` keys'
    encodings are kept, found by the key object itself: finalize's blocklist hash (here)
    and the certificate's Subject Key Identifier (`ca.key_identifier`) take one encoding
    of the CSR's key, which `csr_public_key` gives both as one object. Each encoding of
    a P-256 key converts its point to affine coordinates, a field inversion of some
    45,000 instructions."""
    kept = _spki_kept.get(id(key))
    if kept is not None and kept[0] is key:
        return kept[1]
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if len(_spki_kept) >= SPKI_KEPT:
        # One C call: no other thread's change can come between a look and a removal.
        _spki_kept.popitem(last=False)
    _spki_kept[id(key)] = (key, der)
    return der


def spki_sha256(key: CertificatePublicKeyTypes) -> str:
    """Hex SHA-256 of the key's DER SubjectPublicKeyInfo: the key's blocklist entry."""
    return hashlib.sha256(spki_der(key)).hexdigest()


def check_key(
    key: CertificatePublicKeyTypes,
    policy: KeyPolicy,
    blocklist: KeyBlocklist | None = None,
    *,
    purpose: KeyPurpose | str = KeyPurpose.CERTIFICATE,
) -> None:
    """Raise badPublicKey unless `key` is acceptable for `purpose` under `policy`."""
    use = KeyPurpose(purpose)
    _check_kind(key, policy, use)
    why = blocklist.reason(spki_sha256(key)) if blocklist is not None else None
    if why is not None:
        raise _bad_key(f"{use} key is blocked: {why}")
    if is_rsa_public(key):
        _check_rsa_modulus(key.public_numbers().n, policy)


def check_rsa_cost(key: CertificatePublicKeyTypes, policy: KeyPolicy) -> None:
    """badPublicKey for an RSA key whose exponent or size would make verifying a
    signature by it costly; other keys pass. Cheap (no arithmetic on the modulus), so it
    runs before a signature by the key is verified: verifying costs a modular
    exponentiation by the exponent, and a 3072-bit one (OpenSSL allows any below the
    modulus up to 3072 bits) made one verification 80 times that with 65537. The
    policy's smallest size is not checked here: it costs nothing to verify, and a key the
    CA once certified may revoke its certificate (RFC 8555 §7.6) after the policy's
    minimum has risen."""
    if not is_rsa_public(key):
        return
    if key.key_size > policy.rsa_max_bits:
        raise _bad_key(
            f"RSA key size {key.key_size} bits is not accepted: at most {policy.rsa_max_bits}"
        )
    exponent = key.public_numbers().e
    if exponent != RSA_EXPONENT:
        raise _bad_key(f"RSA public exponent {exponent} is not accepted: it must be 65537")


def _bad_key(detail: str) -> AcmeError:
    return problem(ProblemType.BAD_PUBLIC_KEY, detail)


def _check_kind(key: CertificatePublicKeyTypes, policy: KeyPolicy, use: KeyPurpose) -> None:
    if is_rsa_public(key):
        _check_rsa_shape(key, policy)
    elif is_ec_public(key):
        if key.curve.name not in policy.ec_curves:
            allowed = ", ".join(_NIST.get(c, c) for c in sorted(policy.ec_curves))
            raise _bad_key(f"ECDSA curve {key.curve.name} is not accepted: use one of {allowed}")
    elif is_ed25519_public(key):
        if use is not KeyPurpose.ACCOUNT or not policy.allow_ed25519_accounts:
            raise _bad_key(f"Ed25519 keys are not accepted as {use} keys")
        if ed25519_small_order(key.public_bytes_raw()):
            raise _bad_key(
                "Ed25519 key is a point of small order: one signature verifies for every "
                "message with it, so it proves nothing"
            )
    else:
        kind = type(key).__name__.removesuffix("PublicKey").lstrip("_")
        raise _bad_key(f"{kind} keys are not accepted: use RSA or ECDSA")


def _check_rsa_shape(key: rsa.RSAPublicKey, policy: KeyPolicy) -> None:
    bits, exponent = key.key_size, key.public_numbers().e
    if not policy.rsa_min_bits <= bits <= policy.rsa_max_bits or bits % 8:
        raise _bad_key(
            f"RSA key size {bits} bits is not accepted: the modulus must be "
            f"{policy.rsa_min_bits} to {policy.rsa_max_bits} bits and a multiple of 8"
        )
    if exponent != RSA_EXPONENT:
        raise _bad_key(f"RSA public exponent {exponent} is not accepted: it must be 65537")


# Edwards25519 (RFC 8032 §5.1): the field prime, d, and a square root of -1.
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
# A point of order 8 (as libsodium's list of small-order encodings has it): its multiples
# are the eight points of order dividing 8, whose y coordinates are the five below.
_ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def ed25519_small_order(encoded: bytes) -> bool:
    """True if `encoded` names a point whose order divides 8 (the identity among them).
    OpenSSL accepts such a public key, and with A of small order the verification
    equation [S]B = R + [k]A holds for S = 0 and R = -[k]A, the same for every k when
    A is the identity: a "signature" that verifies for every message. Such a point is
    known by its y alone (x is then one of a pair of small-order points); y is read as
    OpenSSL reads it, modulo p, so that non-canonical spellings are caught too."""
    if len(encoded) != 32:
        return False
    return (int.from_bytes(encoded, "little") & ((1 << 255) - 1)) % _P in _SMALL_ORDER_Y


def _ed25519_decode(encoded: bytes) -> tuple[int, int]:
    """RFC 8032 §5.1.3 (the point is known to be on the curve)."""
    y = (int.from_bytes(encoded, "little") & ((1 << 255) - 1)) % _P
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P:
        x = x * _SQRT_M1 % _P
    return (_P - x if x & 1 != encoded[31] >> 7 else x), y


def _ed25519_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Affine addition on -x^2 + y^2 = 1 + d x^2 y^2 (complete: never divides by 0)."""
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def _small_order_y() -> frozenset[int]:
    start = _ed25519_decode(_ORDER_8)
    points, point = [], start
    for _ in range(8):
        points.append(point)
        point = _ed25519_add(point, start)
    assert point == start and points[4] != (0, 1), "not a point of order 8"
    return frozenset(y for _, y in points)


_SMALL_ORDER_Y = _small_order_y()


def _check_rsa_modulus(n: int, policy: KeyPolicy) -> None:
    factor = _small_factor(n, policy.small_primes_bound)
    if factor is not None:
        raise _bad_key(f"RSA modulus is divisible by the small prime {factor}")
    if _fermat_factorable(n, policy.fermat_rounds):
        raise _bad_key(
            "RSA modulus is factorable by Fermat's method: its prime factors are too close"
        )


def _small_factor(n: int, bound: int) -> int | None:
    common = math.gcd(n, _primorial(bound))
    if common == 1:
        return None
    return next(p for p in _primes_upto(bound) if common % p == 0)


def _fermat_factorable(n: int, rounds: int) -> bool:
    """True if n = a² - b² for some a in ceil(√n) .. ceil(√n) + rounds - 1."""
    a = math.isqrt(n)
    if a * a < n:
        a += 1
    for _ in range(rounds):
        b2 = a * a - n
        b = math.isqrt(b2)
        if b * b == b2:
            return True
        a += 1
    return False


@functools.cache
def _primes_upto(bound: int) -> tuple[int, ...]:
    if bound < 2:
        return ()
    sieve = bytearray([1]) * (bound + 1)
    sieve[0] = sieve[1] = 0
    for i in range(2, math.isqrt(bound) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, bound + 1, i)))
    return tuple(i for i, flag in enumerate(sieve) if flag)


@functools.cache
def _primorial(bound: int) -> int:
    return math.prod(_primes_upto(bound))
