"""The CA's lint path (lint.py: indexed walk, memoized decoding and string checks) gives
exactly the findings of plain pkilint, run in a fresh interpreter that imports nothing
of ours: same codes, severities, paths and messages, in the same order, over many varied
certificates and precertificates, good and deliberately broken, each linted twice (the
second time served from the memos)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    LeafShape,
    load_or_create_issuer,
    new_serial,
    precertificate_builder,
    subscriber_builder,
)
from acmekit.server.lint import Linter, lint_certificate_der

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DNS, IP = IdentifierType.DNS, IdentifierType.IP
EC_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
P384_KEY = ec.generate_private_key(ec.SECP384R1()).public_key()
RSA_KEY = rsa.generate_private_key(65537, 2048).public_key()
RSA_1024 = rsa.generate_private_key(65537, 1024).public_key()
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

# Plain pkilint, as its own documentation runs it: DER in, findings out.
PLAIN = """
import json, sys
from pkilint import finding_filter, loader
from pkilint.cabf import serverauth
from pkilint.cabf.serverauth import serverauth_constants
from pkilint.pkix import certificate

types = serverauth_constants.CertificateType
out = []
for hexder, precert in json.load(sys.stdin):
    kind = types.DV_PRE_CERTIFICATE if precert else types.DV_FINAL_CERTIFICATE
    container = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)
    )
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(bytes.fromhex(hexder), "tbs")
    results, _ = finding_filter.filter_results(
        serverauth.create_serverauth_finding_filters(kind), container.validate(doc.root)
    )
    out.append([
        [d.finding.severity.name, d.finding.code, str(r.node.path), d.message]
        for r in results for d in r.finding_descriptions
    ])
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(tmp_path_factory.mktemp("lint-fast") / "state", NOW)


def ca_builder(issuer: Issuer, names: list[Identifier], **kw: object) -> x509.CertificateBuilder:
    args: dict[str, object] = {
        "serial": new_serial(),
        "not_before": NOW,
        "not_after": NOW + timedelta(days=90),
        "crl_url": "http://crl.example.com/crl/0.crl",
        "issuer_url": "http://crl.example.com/issuer.der",
    }
    args.update(kw)
    key = args.pop("key", EC_KEY)
    return subscriber_builder(issuer, key, names, **args)  # type: ignore[arg-type]


def raw(
    issuer: Issuer,
    *,
    cn: str | None = "www.example.com",
    sans: list[x509.GeneralName] | None = None,
    key: object = EC_KEY,
    days: int = 90,
    key_usage: bool = True,
    eku: list[ObjectIdentifier] | None = None,
    ca: bool = False,
    extra: list[x509.ExtensionType] = (),  # type: ignore[assignment]
) -> x509.CertificateBuilder:
    """A hand-made subscriber certificate, to break the rules the CA's builder keeps."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.intermediate_cert.subject)
        .public_key(key)  # type: ignore[arg-type]
        .serial_number(new_serial())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.intermediate_cert.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(eku if eku is not None else [ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
    )
    if key_usage:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    if sans is None:
        sans = [x509.DNSName("www.example.com")]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=not cn)
    for ext in extra:
        b = b.add_extension(ext, critical=False)
    return b


Case = Callable[[Issuer], x509.CertificateBuilder]
POLICY = x509.CertificatePolicies(
    [x509.PolicyInformation(ObjectIdentifier("2.23.140.1.2.1"), None)]
)
CASES: dict[str, Case] = {
    "default": lambda i: ca_builder(i, [Identifier(DNS, "www.example.com")]),
    "rsa subscriber": lambda i: ca_builder(i, [Identifier(DNS, "r.example.com")], key=RSA_KEY),
    "p384 subscriber": lambda i: ca_builder(i, [Identifier(DNS, "p.example.com")], key=P384_KEY),
    "rsa 1024": lambda i: ca_builder(i, [Identifier(DNS, "weak.example.com")], key=RSA_1024),
    "many names": lambda i: ca_builder(
        i, [Identifier(DNS, f"n{n}.example.org") for n in range(12)]
    ),
    "wildcard": lambda i: ca_builder(i, [Identifier(DNS, "*.example.net")]),
    "400 days": lambda i: ca_builder(
        i, [Identifier(DNS, "a.example.com")], not_after=NOW + timedelta(days=400)
    ),
    "200 days": lambda i: ca_builder(
        i, [Identifier(DNS, "a.example.com")], not_after=NOW + timedelta(days=200)
    ),
    "internal names": lambda i: ca_builder(
        i, [Identifier(DNS, "host.corp"), Identifier(DNS, "localhost")]
    ),
    "ip addresses": lambda i: ca_builder(
        i, [Identifier(IP, "10.0.0.1"), Identifier(IP, "192.0.2.7"), Identifier(IP, "2001:db8::1")]
    ),
    "public ip": lambda i: ca_builder(i, [Identifier(IP, "8.8.8.8")]),
    "no crl no aia": lambda i: ca_builder(
        i, [Identifier(DNS, "b.example.com")], crl_url=None, issuer_url=None
    ),
    "ldap crl": lambda i: ca_builder(
        i, [Identifier(DNS, "b.example.com")], crl_url="ldap://crl.example.com/cn=crl"
    ),
    "bad crl url": lambda i: ca_builder(
        i, [Identifier(DNS, "b.example.com")], crl_url="http://bad host/crl"
    ),
    "tlsserver shape": lambda i: ca_builder(
        i,
        [Identifier(DNS, "c.example.com")],
        shape=LeafShape(common_name=False, subject_key_identifier=False, client_auth=False),
    ),
    "missing key usage": lambda i: raw(i, key_usage=False),
    "cn not in san": lambda i: raw(i, cn="other.example.com"),
    "no san": lambda i: raw(i, sans=[]),
    "no subject no san": lambda i: raw(i, cn=None, sans=[]),
    "bad dns san": lambda i: raw(
        i, cn=None, sans=[x509.DNSName("bad_name.example.com"), x509.DNSName("*.*.example.com")]
    ),
    "uppercase and trailing dot": lambda i: raw(
        i, cn=None, sans=[x509.DNSName("WWW.Example.COM"), x509.DNSName("a.example.com.")]
    ),
    "email and uri san": lambda i: raw(
        i,
        cn=None,
        sans=[x509.RFC822Name("a@example.com"), x509.UniformResourceIdentifier("https://x.test/")],
    ),
    "ip as cn": lambda i: raw(i, cn="192.0.2.1", sans=[x509.IPAddress(IPv4Address("192.0.2.1"))]),
    "ca true": lambda i: raw(i, ca=True),
    "no eku": lambda i: raw(i, eku=[]),
    "code signing eku": lambda i: raw(i, eku=[ExtendedKeyUsageOID.CODE_SIGNING]),
    "policies and rsa": lambda i: raw(i, key=RSA_KEY, extra=[POLICY]),
    "unknown extension": lambda i: raw(
        i, extra=[x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")]
    ),
    "sct list": lambda i: ca_builder(i, [Identifier(DNS, "s.example.com")]).add_extension(
        x509.UnrecognizedExtension(SCT_LIST, b"\x04\x02\x00\x00"), critical=False
    ),
}


def signed(issuer: Issuer, builder: x509.CertificateBuilder) -> bytes:
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def plain_pkilint(documents: list[tuple[bytes, bool]]) -> list[list[list[str | None]]]:
    done = subprocess.run(
        [sys.executable, "-c", PLAIN],
        input=json.dumps([[der.hex(), precert] for der, precert in documents]),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    found: list[list[list[str | None]]] = json.loads(done.stdout)
    return found


def test_fast_lint_gives_plain_pkilints_findings(issuer: Issuer) -> None:
    Linter().warm(precert=True)  # the CA's path: indexed, memoized
    documents: list[tuple[bytes, bool]] = []
    for case in CASES.values():
        for _ in range(2):  # two of each: new serial, key and signature, same shape
            documents.append((signed(issuer, case(issuer)), False))
            documents.append((signed(issuer, precertificate_builder(case(issuer))), True))
    expected = plain_pkilint(documents)
    codes: set[str] = set()
    for (der, precert), want, name in zip(
        documents, expected, [n for n in CASES for _ in range(4)], strict=True
    ):
        for _ in range(2):  # the second time from the memos
            report = lint_certificate_der(der, precert=precert)
            got = [[f.severity.value, f.code, f.path, f.message] for f in report.findings]
            assert got == want, name
        codes |= {f[1] for f in want if f[1]}
    # the cases do raise findings of every kind the memos touch, and those agree
    assert {
        "cabf.internal_domain_name",  # the public suffix check
        "cabf.serverauth.invalid_dnsname_syntax",  # the domain syntax check
        "pkix.invalid_uri_syntax",  # the URI syntax check
        "itu.invalid_asn1_syntax",  # a decoding failure (not memoized)
        "cabf.rsa_modulus_invalid_length",
        "cabf.serverauth.certificate_validity_period_exceeds_200_days",
        "cabf.serverauth.subscriber.key_usage_extension_absent",
        "cabf.serverauth.subscriber_common_name_unknown_source",
    } <= codes


def test_a_warning_code_is_logged_once_then_at_debug(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    linter = Linter()
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    code = "cabf.serverauth.dv.common_name_attribute_present"
    with caplog.at_level(logging.DEBUG, "acmekit.server.lint"):
        for _ in range(3):
            linter.sign(ca_builder(issuer, [Identifier(DNS, "w.example.com")]), key)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and code in r.getMessage()]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and code in r.getMessage()]
    assert len(warned) <= 1  # at most once in the process (another test may have been first)
    assert len(debug) == 3  # each certificate's warnings, counted, at debug
