"""Signing certificates and CRLs with a key the process does not hold (a PKCS#11 token).

`cryptography`'s builders sign only with their own private-key objects, so a signature
made elsewhere is put in place by hand. X.509 signs the same way for both documents:

    Certificate / CertificateList ::= SEQUENCE {
        tbsCertificate / tbsCertList   ...,
        signatureAlgorithm             AlgorithmIdentifier,
        signatureValue                 BIT STRING }          (RFC 5280 §4.1, §5.1)

1. The builder signs once with a throwaway key of the same algorithm (same curve and hash,
   or RSA with SHA-256): that gives the DER of the TBS part, whose inner `signature`
   AlgorithmIdentifier is already the one the real signature has, and the outer
   AlgorithmIdentifier. The throwaway key is made once per process and signs nothing else.
2. The external key signs the TBS bytes (ECDSA: raw r||s from PKCS#11, DER-encoded here as
   Ecdsa-Sig-Value, RFC 3279 §2.2.3; RSA: PKCS#1 v1.5 over SHA-256, as is).
3. The outer SEQUENCE is rebuilt with the new BIT STRING, parsed back with `cryptography`
   and checked against the external key's public key before anyone sees it.

The DER handled here is what `cryptography` itself wrote: definite lengths, one
top-level SEQUENCE of three elements. Anything else is refused.
"""

from __future__ import annotations

import functools
from typing import Protocol, TypeGuard, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from acmekit.protocol.keykinds import is_ec_public, is_ed25519_private, is_file_key

ExternalPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_SEQUENCE = 0x30
_INTEGER = 0x02
_BIT_STRING = 0x03


class SignerUnavailable(Exception):
    """The signing key cannot be reached now (token removed, session lost): the work
    waits and is tried again; clients are asked to come back (503, Retry-After)."""


@runtime_checkable
class ExternalKey(Protocol):
    """A signing key held outside the process: it signs bytes and shows its public key."""

    def public_key(self) -> ExternalPublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """The X.509 signatureValue's bytes over `data` (DER Ecdsa-Sig-Value for ECDSA,
        PKCS#1 v1.5 for RSA), with the hash `digest_for` names. SignerUnavailable if
        the key cannot be reached."""
        ...

    def check(self) -> None:
        """Raise SignerUnavailable unless the key can sign now."""
        ...


def is_external(key: object) -> TypeGuard[ExternalKey]:
    """Whether `key` is held outside the process (an ExternalKey), cheaply for a file key."""
    # A key file loads one of cryptography's private keys, never an ExternalKey: tested
    # first, because `isinstance(x, ExternalKey)` is a runtime Protocol check that looks
    # up each of the Protocol's members: 100-200 µs on Python 3.11, about 1 µs for this.
    return not is_file_key(key) and isinstance(key, ExternalKey)


# A key the builders of `cryptography` sign with themselves (one of FILE_KEYS).
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def file_key(key: object) -> SigningKey:
    """`key` as a file key; a key held elsewhere cannot go to a builder's `sign`."""
    if is_file_key(key):
        return key
    raise ValueError(f"cannot sign certificates with a {type(key).__name__}")


def file_digest(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash that goes with a file key: as `digest_for` gives it, none with Ed25519."""
    if is_ed25519_private(key):
        return None
    return digest_for(key.public_key())


# ---------------------------------------------------------------------------------------
# DER (X.690 §8.1): just what the assembly needs


def der_length(n: int) -> bytes:
    """A definite length: short form below 128, else 0x80|count and big-endian octets."""
    if n < 0:
        raise ValueError("a length is not negative")
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_integer(value: int) -> bytes:
    """A non-negative INTEGER in its minimal two's-complement form (§8.3)."""
    if value < 0:
        raise ValueError("only non-negative integers")
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for a 0 sign bit
    if len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return der_tlv(_INTEGER, body)


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at `offset`; ValueError
    for anything but a single-octet tag with a definite, minimal length within `data`."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-octet tags are not expected here")
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 8:
            raise ValueError("indefinite or oversized DER length")
        if pos + count > len(data):
            raise ValueError("truncated DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += count
    if pos + length > len(data):
        raise ValueError("DER element runs past the end")
    return tag, pos, pos + length


def ecdsa_signature_der(raw: bytes) -> bytes:
    """PKCS#11's ECDSA signature (r || s, each the order's length, big-endian; PKCS#11
    v2.40 §2.3.1) as Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }."""
    if not raw or len(raw) % 2:
        raise ValueError(f"an ECDSA signature of {len(raw)} bytes is not r || s")
    half = len(raw) // 2
    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    if r == 0 or s == 0:
        raise ValueError("an ECDSA signature with r or s zero")
    return der_tlv(_SEQUENCE, der_integer(r) + der_integer(s))


def signed_parts(signed: bytes) -> tuple[bytes, bytes, bytes]:
    """(TBS, signatureAlgorithm, signature bytes) of a signed X.509 document's DER."""
    tag, start, end = read_tlv(signed)
    if tag != _SEQUENCE or end != len(signed):
        raise ValueError("not one DER SEQUENCE")
    parts: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        t, s, e = read_tlv(signed, pos)
        parts.append((t, pos, s, e))
        pos = e
    if len(parts) != 3 or [p[0] for p in parts] != [_SEQUENCE, _SEQUENCE, _BIT_STRING]:
        raise ValueError("not a signed X.509 structure (TBS, AlgorithmIdentifier, BIT STRING)")
    (_, tbs_at, _, tbs_end), (_, alg_at, _, alg_end), (_, _, sig_start, sig_end) = parts
    if sig_end == sig_start or signed[sig_start] != 0:
        raise ValueError("a signature BIT STRING has no unused bits")
    return signed[tbs_at:tbs_end], signed[alg_at:alg_end], signed[sig_start + 1 : sig_end]


def with_signature(signed: bytes, signature: bytes) -> bytes:
    """`signed` (DER) with its signatureValue replaced by `signature`."""
    tbs, algorithm, _ = signed_parts(signed)
    return assemble_signed(tbs, algorithm, signature)


def assemble_signed(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """The signed document's DER: TBS, signatureAlgorithm (DER), signature in a BIT
    STRING with no unused bits (RFC 5280 §4.1)."""
    bit_string = der_tlv(_BIT_STRING, b"\x00" + signature)
    return der_tlv(_SEQUENCE, tbs + algorithm + bit_string)


# ---------------------------------------------------------------------------------------
# Certificates and CRLs


def digest_for(key: ExternalPublicKey) -> hashes.SHA256 | hashes.SHA384:
    """SHA-384 with P-384 (as ca.py's file keys), SHA-256 otherwise."""
    if is_ec_public(key) and key.curve.name == "secp384r1":
        return hashes.SHA384()
    return hashes.SHA256()


@functools.cache
def _throwaway(kind: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A key of the external key's algorithm, only to have `cryptography` lay out the DER
    (its signature is replaced before the document leaves this module)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1() if kind == "secp384r1" else ec.SECP256R1())


def throwaway_like(key: ExternalPublicKey) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A throwaway key whose signatures have `key`'s algorithm identifier (lint.py signs
    its copy with it)."""
    return _throwaway(_kind(key))


def _kind(key: ExternalPublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if key.curve.name not in ("secp256r1", "secp384r1"):
        raise ValueError(f"cannot sign with a key on {key.curve.name}")
    return key.curve.name


def verify_signature(public: ExternalPublicKey, signature: bytes, data: bytes) -> None:
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, data, padding.PKCS1v15(), digest_for(public))
    else:
        public.verify(signature, data, ec.ECDSA(digest_for(public)))


def external_signature(key: ExternalKey, tbs: bytes) -> bytes:
    """`key`'s signature over `tbs`, checked against its public key."""
    return _external_signature(key, key.public_key(), tbs)


def _external_signature(key: ExternalKey, public: ExternalPublicKey, tbs: bytes) -> bytes:
    signature = key.sign(tbs)
    try:
        verify_signature(public, signature, tbs)
    except InvalidSignature:
        # Never hand out a document that does not verify: a token answering with a wrong
        # key or a garbled signature is a fault to stop at, not to pass on.
        raise ValueError("the external key's signature does not verify") from None
    return signature


def sign_certificate(builder: x509.CertificateBuilder, key: ExternalKey) -> x509.Certificate:
    """`builder`'s certificate, signed by `key`, checked against its public key."""
    public = key.public_key()
    draft = builder.sign(_throwaway(_kind(public)), digest_for(public))
    tbs = draft.tbs_certificate_bytes
    signature = _external_signature(key, public, tbs)
    cert = x509.load_der_x509_certificate(
        with_signature(draft.public_bytes(serialization.Encoding.DER), signature)
    )
    # The parsed result must be the document whose signature was verified, to the byte.
    if cert.tbs_certificate_bytes != tbs or cert.signature != signature:
        raise ValueError("assembled certificate does not round-trip")
    return cert


def sign_crl(
    builder: x509.CertificateRevocationListBuilder, key: ExternalKey
) -> x509.CertificateRevocationList:
    """`builder`'s CRL, signed by `key`, checked against its public key."""
    public = key.public_key()
    draft = builder.sign(_throwaway(_kind(public)), digest_for(public))
    tbs = draft.tbs_certlist_bytes
    signature = _external_signature(key, public, tbs)
    crl = x509.load_der_x509_crl(
        with_signature(draft.public_bytes(serialization.Encoding.DER), signature)
    )
    if crl.tbs_certlist_bytes != tbs or crl.signature != signature:
        raise ValueError("assembled CRL does not round-trip")
    return crl
