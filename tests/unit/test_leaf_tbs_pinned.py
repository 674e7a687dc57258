"""A subscriber certificate's TBS, pinned byte for byte against the typed builder.

`ca.subscriber_builder` carries the extensions that are alike for every certificate of
an issuer, profile or URL encoded once (`ca.encoded`), and builds the rest its own way;
here the same certificate is built the plain way, every extension a typed object added
in the certificate's order, and the two TBSCertificates must be the same bytes over key
kinds, name sets, profile shapes and URLs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    DOMAIN_VALIDATED,
    Issuer,
    LeafShape,
    load_or_create_issuer,
    sign_builder,
    subscriber_builder,
)

NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
DNS, IP = IdentifierType.DNS, IdentifierType.IP


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(Path(tmp_path_factory.mktemp("ca")), NOW)


def plain_builder(
    issuer: Issuer,
    key: CertificatePublicKeyTypes,
    identifiers: Sequence[Identifier],
    serial: int,
    crl_url: str | None,
    issuer_url: str | None,
    shape: LeafShape,
    times: tuple[datetime, datetime] = (NOW, NOW + timedelta(days=90)),
) -> x509.CertificateBuilder:
    """The certificate as the profile describes it, every extension a typed object."""
    cn = next((i.value for i in identifiers if i.type == DNS), None)
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn and len(cn) <= 64 else []
    subject = x509.Name(attrs if shape.common_name else [])
    rsa_key = isinstance(key, rsa.RSAPublicKey)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if shape.client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .issuer_name(issuer.intermediate_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, rsa_key, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .subject_name(subject)
        .public_key(key)
        .serial_number(serial)
        .not_valid_before(times[0])
        .not_valid_after(times[1])
    )
    if shape.subject_key_identifier:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key), critical=False
        )
    ski = issuer.intermediate_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(i.value)) if i.type == IP else x509.DNSName(i.value)
        for i in identifiers
    ]
    builder = (
        builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=len(subject) == 0)
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(DOMAIN_VALIDATED, None)]),
            critical=False,
        )
    )
    if issuer_url is not None:
        where = x509.UniformResourceIdentifier(issuer_url)
        aia = x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, where)
        builder = builder.add_extension(x509.AuthorityInformationAccess([aia]), critical=False)
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder


KEYS = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()).public_key(),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()).public_key(),
    "rsa": lambda: rsa.generate_private_key(65537, 2048).public_key(),
    "ed25519": lambda: ed25519.Ed25519PrivateKey.generate().public_key(),
}
NAME_SETS = [
    [Identifier(DNS, "a.example.com")],
    [Identifier(DNS, "a.example.com"), Identifier(DNS, "*.b.example.com")],
    [Identifier(IP, "192.0.2.7"), Identifier(DNS, "c.example.com")],
    [Identifier(IP, "2001:db8::9")],
    [Identifier(DNS, "x" * 60 + ".example.com"), Identifier(DNS, "d.example.com")],
]
SHAPES = [
    LeafShape(),
    LeafShape(common_name=False, subject_key_identifier=False, client_auth=False),
    LeafShape(common_name=True, subject_key_identifier=False, client_auth=True),
]
URLS = [
    (None, None),
    ("http://127.0.0.1:14000/crl/3", "http://127.0.0.1:14000/issuer"),
    ("http://ca.example.com/crl/0", None),
    (None, "http://ca.example.com/intermediate"),
]


@pytest.mark.parametrize("kind", sorted(KEYS))
@pytest.mark.parametrize("shape", SHAPES)
def test_tbs_is_the_typed_builders(issuer: Issuer, kind: str, shape: LeafShape) -> None:
    key = KEYS[kind]()
    for n, names in enumerate(NAME_SETS):
        for crl_url, issuer_url in URLS:
            serial = (1 << 126) | (n * 7919 + 1)
            ours = subscriber_builder(
                issuer,
                key,
                names,
                serial=serial,
                not_before=NOW,
                not_after=NOW + timedelta(days=90),
                crl_url=crl_url,
                issuer_url=issuer_url,
                shape=shape,
            )
            plain = plain_builder(issuer, key, names, serial, crl_url, issuer_url, shape)
            cert = sign_builder(ours, issuer)
            assert cert.tbs_certificate_bytes == sign_builder(plain, issuer).tbs_certificate_bytes
            # Read back, each extension is of its own class again.
            for ext in cert.extensions:
                assert not isinstance(ext.value, x509.UnrecognizedExtension), ext


# Validity times in UTC (with and without microseconds, at a second's edge), in another
# zone, and naive (taken as UTC by the builder).
TIMES = [
    (NOW, NOW + timedelta(days=90)),
    (datetime(2031, 3, 4, 5, 6, 7, 999_999, UTC), datetime(2031, 6, 2, 23, 59, 59, 1, UTC)),
    (
        datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2031, 6, 2, 1, 0, 0, tzinfo=timezone(timedelta(hours=-8))),
    ),
    (datetime(2031, 3, 4, 5, 6, 7), datetime(2031, 6, 2, 5, 6, 7)),
    (datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2050, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("times", TIMES)
def test_validity_is_the_typed_builders(issuer: Issuer, times: tuple[datetime, datetime]) -> None:
    key = KEYS["p256"]()
    names = NAME_SETS[0]
    serial = (1 << 126) | 5
    ours = subscriber_builder(
        issuer,
        key,
        names,
        serial=serial,
        not_before=times[0],
        not_after=times[1],
        crl_url=None,
        shape=LeafShape(),
    )
    plain = plain_builder(issuer, key, names, serial, None, None, LeafShape(), times)
    cert = sign_builder(ours, issuer)
    assert cert.tbs_certificate_bytes == sign_builder(plain, issuer).tbs_certificate_bytes


def test_an_extension_twice_does_not_parse_back(issuer: Issuer) -> None:
    # subscriber_builder hands the builder its extensions at once, past add_extension's
    # check for an OID given twice; a certificate that had one twice is refused on
    # reading, as every test here reads the extensions of what it made.
    ours = subscriber_builder(
        issuer,
        KEYS["p256"](),
        NAME_SETS[0],
        serial=(1 << 126) | 9,
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        crl_url=None,
    )
    twice = x509.CertificateBuilder(extensions=[*ours._extensions, ours._extensions[0]])
    twice = (
        twice.issuer_name(issuer.intermediate_cert.subject)
        .subject_name(x509.Name([]))
        .public_key(KEYS["p256"]())
        .serial_number(9)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    with pytest.raises(x509.DuplicateExtension):
        _ = sign_builder(twice, issuer).extensions
