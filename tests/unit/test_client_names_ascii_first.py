"""The client folds a DNS name's case only when it is ASCII: the Kelvin sign (U+212A)
lower-cases to "k", so "\u212aexample.test" became an order for "kexample.test" (a name
not asked for), and a certificate naming "\u212aexample.test" (a dNSName the parser
reads although an IA5String is ASCII, RFC 5280 §4.2.1.6) passed for "kexample.test"."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.client import as_identifier
from acmekit.client.client import check_leaf
from acmekit.client.errors import ServerProtocolError
from acmekit.protocol.messages import Identifier, IdentifierType

KELVIN = "\u212aexample.test"
ORDERED = [Identifier(IdentifierType.DNS, "kexample.test")]
URL = "https://ca.test/acme/cert/1"


def test_a_name_with_the_kelvin_sign_is_sent_as_given() -> None:
    assert as_identifier(KELVIN) == Identifier(IdentifierType.DNS, KELVIN)
    assert as_identifier("KExample.TEST") == ORDERED[0]


def _leaf_and_csr(name: str) -> tuple[str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    # DNSName's constructor refuses non-ASCII; a CA's DER need not.
    san = x509.DNSName._init_without_validation(name)  # type: ignore[attr-defined]
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        csr.public_bytes(serialization.Encoding.DER),
    )


def test_a_certificate_naming_the_kelvin_sign_does_not_pass_for_the_ascii_name() -> None:
    pem, csr = _leaf_and_csr(KELVIN)
    with pytest.raises(ServerProtocolError, match=r"does not name kexample\.test"):
        check_leaf(pem, csr, ORDERED, URL)


def test_a_certificate_naming_the_ascii_name_in_any_case_passes() -> None:
    pem, csr = _leaf_and_csr("KExample.test")
    check_leaf(pem, csr, ORDERED, URL)
