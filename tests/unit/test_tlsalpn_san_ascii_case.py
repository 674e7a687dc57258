"""A tls-alpn-01 certificate's one dNSName equals the identifier without regard to ASCII
case (RFC 4343 §3, RFC 8737 §3). Lower-casing both sides also took the Kelvin sign
(U+212A, which the DER parser lets into a dNSName) to "k": a certificate naming
"\u212aexample.test" passed for the identifier "kexample.test"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.tlsalpn import (
    ACME_IDENTIFIER_OID,
    acme_identifier_extension_value,
    check_tlsalpn01_certificate,
)

IDENT = Identifier(IdentifierType.DNS, "kexample.test")
KEY_AUTHORIZATION = "token.thumbprint"


def _cert(san: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME tls-alpn-01 challenge")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # DNSName's constructor refuses non-ASCII; a responder's DER need not.
    entry = x509.DNSName._init_without_validation(san)  # type: ignore[attr-defined]
    value = acme_identifier_extension_value(KEY_AUTHORIZATION)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([entry]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, value), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_a_dnsname_with_the_kelvin_sign_is_not_the_identifier() -> None:
    found = check_tlsalpn01_certificate(_cert("\u212aexample.test"), IDENT, KEY_AUTHORIZATION)
    assert found is not None
    assert "subjectAltName must be exactly kexample.test" in found


def test_an_ascii_dnsname_in_another_case_still_is() -> None:
    assert check_tlsalpn01_certificate(_cert("KExample.TEST"), IDENT, KEY_AUTHORIZATION) is None
