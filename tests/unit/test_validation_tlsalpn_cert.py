"""The RFC 8737 validation certificate: built by `tlsalpn01_certificate`, judged by
`check_tlsalpn01_certificate`, including the wrong certificates a responder might send."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from acmekit.protocol.challenges import ACME_IDENTIFIER_OID, acme_identifier_extension_value
from acmekit.protocol.jose import PrivateKey
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.tlsalpn import (
    check_tlsalpn01_certificate,
    tlsalpn01_certificate,
    tlsalpn01_sni,
)

KEY = ec.generate_private_key(ec.SECP256R1())
KEY_AUTH = "token-token-token-token.thumbprint"
NAME = Identifier(IdentifierType.DNS, "a.x.test")


def build(
    sans: list[x509.GeneralName] | None,
    ext_value: bytes | None = acme_identifier_extension_value(KEY_AUTH),
    critical: bool = True,
) -> x509.Certificate:
    """A certificate with exactly the given parts, to present the wrong ones."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ext_value is not None:
        ext = x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, ext_value)
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(KEY, hashes.SHA256())


@pytest.mark.parametrize(
    "key",
    [KEY, ed25519.Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 2048)],
    ids=["p256", "ed25519", "rsa"],
)
def test_built_certificate_passes(key: PrivateKey) -> None:
    cert = tlsalpn01_certificate(NAME, KEY_AUTH, key)
    assert check_tlsalpn01_certificate(cert, NAME, KEY_AUTH) is None
    ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert ext.critical
    assert ext.value.public_bytes()[:2] == b"\x04\x20"


def test_ip_certificate_and_reverse_name() -> None:
    ident = Identifier(IdentifierType.IP, "2001:db8::1")
    cert = tlsalpn01_certificate(ident, KEY_AUTH, KEY, now=datetime(2025, 1, 1, tzinfo=UTC))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.IPAddress(ipaddress.ip_address("2001:db8::1"))]
    assert check_tlsalpn01_certificate(cert, ident, KEY_AUTH) is None
    assert tlsalpn01_sni(ident).endswith(".8.b.d.0.1.0.0.2.ip6.arpa")
    assert tlsalpn01_sni(Identifier(IdentifierType.IP, "127.0.0.1")) == "1.0.0.127.in-addr.arpa"
    assert tlsalpn01_sni(NAME) == "a.x.test"


def test_dns_name_compares_without_case() -> None:
    cert = build([x509.DNSName("A.X.Test")])
    assert check_tlsalpn01_certificate(cert, NAME, KEY_AUTH) is None


@pytest.mark.parametrize(
    ("cert", "wrong"),
    [
        (build(None), "no subjectAltName"),
        (build([x509.DNSName("b.x.test")]), "must be exactly a.x.test"),
        (build([x509.DNSName("a.x.test"), x509.DNSName("b.x.test")]), "must be exactly"),
        (build([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), "must be exactly"),
        (build([x509.DNSName("a.x.test")], ext_value=None), "no acmeIdentifier"),
        (build([x509.DNSName("a.x.test")], critical=False), "not marked critical"),
        (
            build([x509.DNSName("a.x.test")], acme_identifier_extension_value("other")),
            "does not match",
        ),
        # The bare digest, not wrapped in an OCTET STRING, is wrong too.
        (
            build([x509.DNSName("a.x.test")], acme_identifier_extension_value(KEY_AUTH)[2:]),
            "does not match",
        ),
    ],
)
def test_wrong_certificates(cert: x509.Certificate, wrong: str) -> None:
    found = check_tlsalpn01_certificate(cert, NAME, KEY_AUTH)
    assert found is not None
    assert wrong in found
