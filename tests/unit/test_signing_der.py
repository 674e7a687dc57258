"""The DER assembly that puts an external key's signature into a certificate or a CRL
(acmekit.server.signing): encodings checked against X.690 examples and `cryptography`,
and documents signed by a key outside `cryptography`'s builders verified by it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from acmekit.server.signing import (
    ExternalKey,
    ExternalPublicKey,
    SignerUnavailable,
    der_integer,
    der_length,
    digest_for,
    ecdsa_signature_der,
    read_tlv,
    sign_certificate,
    sign_crl,
    signed_parts,
    with_signature,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)


class RawEcdsaKey:
    """An external key as a PKCS#11 token is one: ECDSA answers r || s (fixed width)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key
        self.signed = 0

    def public_key(self) -> ExternalPublicKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        self.signed += 1
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(digest_for(self.public_key()))))
        width = (self.key.curve.key_size + 7) // 8
        return ecdsa_signature_der(r.to_bytes(width, "big") + s.to_bytes(width, "big"))

    def check(self) -> None:
        return None


class RsaKey:
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key

    def public_key(self) -> ExternalPublicKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def check(self) -> None:
        return None


class WrongKey(RawEcdsaKey):
    """Shows one public key and signs with another."""

    def public_key(self) -> ExternalPublicKey:
        return ec.generate_private_key(ec.SECP256R1()).public_key()


class AwayKey(RawEcdsaKey):
    def sign(self, data: bytes) -> bytes:
        raise SignerUnavailable("token removed")


def _builder(public: ExternalPublicKey) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signed.example")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(0x4242)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public), critical=False
        )  # any extension, to have a body of some size
    )


def _crl_builder(count: int) -> x509.CertificateRevocationListBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crl.example")])
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(NOW)
        .next_update(NOW + timedelta(days=1))
        .add_extension(x509.CRLNumber(7), critical=False)
    )
    for serial in range(1, count + 1):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
        builder = builder.add_revoked_certificate(entry.build())
    return builder


# DER primitives ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (65536, "83010000")],
)
def test_lengths_are_definite_and_minimal(length: int, encoded: str) -> None:
    assert der_length(length).hex() == encoded


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "020100"), (127, "02017f"), (128, "02020080"), (255, "020200ff"), (256, "02020100")],
)
def test_integers_are_minimal_twos_complement(value: int, encoded: str) -> None:
    assert der_integer(value).hex() == encoded


@pytest.mark.parametrize(
    "der",
    [
        "3081050201000201",  # length 5 in long form: not minimal
        "308005000000",  # indefinite length
        "3005020100",  # runs past the end
        "30",  # truncated
        "1f8101",  # multi-octet tag
        "3082000100",  # long form with a leading zero octet
    ],
)
def test_malformed_der_is_refused(der: str) -> None:
    with pytest.raises(ValueError):
        read_tlv(bytes.fromhex(der))


@given(
    st.integers(min_value=1, max_value=2**256 - 1), st.integers(min_value=1, max_value=2**256 - 1)
)
def test_ecdsa_r_s_become_the_der_cryptography_writes(r: int, s: int) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    der = ecdsa_signature_der(raw)
    assert der == encode_dss_signature(r, s)
    assert decode_dss_signature(der) == (r, s)


def test_ecdsa_edge_values() -> None:
    # A high bit needs a leading zero octet; leading zero octets are dropped.
    raw = bytes([0x80] + [0] * 31) + bytes([0] * 31 + [1])
    assert ecdsa_signature_der(raw).hex() == "3026" + "022100" + "80" + "00" * 31 + "020101"
    for bad in (b"", b"\x01" * 63, b"\x00" * 32 + b"\x01" * 32):
        with pytest.raises(ValueError):
            ecdsa_signature_der(bad)


def test_with_signature_replaces_only_the_signature() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _builder(key.public_key()).sign(key, hashes.SHA256())
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs, algorithm, signature = signed_parts(der)
    assert tbs == cert.tbs_certificate_bytes and signature == cert.signature
    assert with_signature(der, signature) == der
    # A signature long enough to need another length octet in every enclosing element.
    longer = with_signature(der, b"\x30" + bytes(300))
    assert signed_parts(longer) == (tbs, algorithm, b"\x30" + bytes(300))
    with pytest.raises(ValueError):
        signed_parts(tbs)  # a TBS alone is not three elements
    with pytest.raises(ValueError):
        signed_parts(der + b"\x00")  # trailing bytes


# Certificates and CRLs signed outside the builder --------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_certificate_signed_by_an_ecdsa_token_key_verifies(curve: ec.EllipticCurve) -> None:
    signer = RawEcdsaKey(ec.generate_private_key(curve))
    cert = sign_certificate(_builder(signer.public_key()), signer)
    assert signer.signed == 1
    public = signer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest_for(public)))
    want = "ecdsa-with-SHA384" if curve.name == "secp384r1" else "ecdsa-with-SHA256"
    assert cert.signature_algorithm_oid._name == want
    assert cert.serial_number == 0x4242


def test_certificate_signed_by_an_rsa_token_key_verifies() -> None:
    signer = RsaKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    cert = sign_certificate(_builder(signer.public_key()), signer)
    public = signer.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert cert.signature_algorithm_oid._name == "sha256WithRSAEncryption"


@pytest.mark.parametrize("count", [0, 1, 400])  # 400 entries: multi-octet lengths throughout
def test_crl_signed_by_a_token_key_verifies(count: int) -> None:
    signer = RawEcdsaKey(ec.generate_private_key(ec.SECP256R1()))
    crl = sign_crl(_crl_builder(count), signer)
    assert crl.is_signature_valid(signer.public_key())
    assert len(crl) == count


def test_a_signature_that_does_not_verify_is_never_returned() -> None:
    with pytest.raises(ValueError, match="does not verify"):
        sign_certificate(
            _builder(ec.generate_private_key(ec.SECP256R1()).public_key()),
            WrongKey(ec.generate_private_key(ec.SECP256R1())),
        )


def test_an_absent_key_is_reported_as_unavailable() -> None:
    signer: ExternalKey = AwayKey(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SignerUnavailable):
        sign_crl(_crl_builder(1), signer)


def test_two_signatures_over_one_builder_differ_only_in_signature() -> None:
    """ECDSA is randomized; the TBS is the builder's, the same each time."""
    signer = RawEcdsaKey(ec.generate_private_key(ec.SECP256R1()))
    builder = _builder(signer.public_key())
    one, two = sign_certificate(builder, signer), sign_certificate(builder, signer)
    assert one.tbs_certificate_bytes == two.tbs_certificate_bytes
    assert one.signature != two.signature
