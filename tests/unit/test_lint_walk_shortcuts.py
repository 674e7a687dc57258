"""The indexed walk's shortcuts (lint._index, lint._asking) give pkilint's own results:
a predicate or supertype asked without the rest of `NodeVisitor.match`, a GeneralName
type predicate left out where the node's path rules it out, and `validate` called
inline in place of pkilint's `validate_wrapper` (findings, unexpected exceptions and
their log, explicit empty results, lists from containers). Each shortcut is driven by
validators that report something at every node they are run on, so a node offered to
one validator more or less, or a result in another order, is a different outcome."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID, ObjectIdentifier
from pkilint import loader, validation
from pkilint.cabf import serverauth
from pkilint.pkix import certificate, general_name
from pkilint.pkix.extension import ExtensionCriticalityValidator
from pyasn1_alt_modules import rfc5280  # type: ignore[import-untyped]

from acmekit.server.lint import (
    _NEVER,
    _PINNED,
    _asking,
    _generalname_type,
    _index,
    _pinned,
    _wrapper_is_plain,
    build_certificate_validator,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TYPES = (
    "otherName",
    "rfc822Name",
    "dNSName",
    "x400Address",
    "directoryName",
    "ediPartyName",
    "uniformResourceIdentifier",
    "iPAddress",
    "registeredID",
)
FINDING = validation.ValidationFinding(validation.ValidationFindingSeverity.NOTICE, "test.seen")


class Seen(validation.Validator):
    """Reports a finding, naming itself, at every node it is run on."""

    def __init__(self, label: str, **kwargs: Any) -> None:
        self.label = label
        super().__init__(validations=[FINDING], **kwargs)

    def validate(self, node: Any) -> None:
        raise validation.ValidationFindingEncountered(FINDING, self.label)

    @property
    def name(self) -> str:
        return f"Seen({self.label})"


class Quiet(validation.Validator):
    """Returns None: pkilint's wrapper makes an empty result of it."""


class ExplicitEmpty(validation.Validator):
    def validate(self, node: Any) -> Any:
        return validation.ValidationResult(self, node, [])


class Broken(validation.Validator):
    def validate(self, node: Any) -> None:
        raise RuntimeError(f"broken at {node.path}")


class OwnWrapper(validation.Validator):
    """A validator with its own `validate_wrapper`: never inlined."""

    def validate_wrapper(self, node: Any) -> Any:
        found = validation.ValidationFindingDescription(FINDING, "own wrapper")
        return validation.ValidationResult(self, node, [found])


SAN, CRLDP = rfc5280.id_ce_subjectAltName, rfc5280.id_ce_cRLDistributionPoints


class Criticality(ExtensionCriticalityValidator):
    """pkilint's match on the extension's OID; reports at every node it is run on."""

    def __init__(self, oid: Any) -> None:
        super().__init__(oid, False, FINDING)

    def validate(self, node: Any) -> None:
        raise validation.ValidationFindingEncountered(FINDING, f"criticality {self._type_oid}")


class TypeMatching(validation.TypeMatchingValidator):
    def __init__(self, oid: Any) -> None:
        super().__init__(
            type_path="extnID", type_oid=oid, value_path="extnValue", pdu_class=rfc5280.Extension
        )

    def validate_with_value(self, node: Any, value_node: Any) -> None:
        raise validation.ValidationFindingEncountered(FINDING, f"type {self.type_oid}")


class Mixin(validation.Validator):
    def match(self, node: Any) -> bool:
        return bool(super().match(node)) and node.path.endswith("0")


class MixedCriticality(Criticality, Mixin):
    """`super().match` in pkilint's class is the mixin's here: no shortcut."""


def validators() -> list[Any]:
    name_types = [
        Seen(f"type {t}", predicate=general_name.create_generalname_type_predicate(t))
        for t in TYPES
    ]
    lookalike = Seen(  # same test as pkilint's, but not its code: asked, never left out
        "lookalike", predicate=lambda n: n.name == "dNSName" and n.parent is not None
    )
    return [
        *name_types,
        lookalike,
        Seen("supertype", pdu_supertype=rfc5280.GeneralName()),
        Seen(
            "supertype and predicate",
            pdu_supertype=rfc5280.GeneralName(),
            predicate=lambda n: n.pdu.getName() != "dNSName",
        ),
        Seen("class and predicate", pdu_class=rfc5280.Extension, predicate=lambda n: True),
        Criticality(SAN),
        Criticality(CRLDP),
        TypeMatching(SAN),
        TypeMatching(rfc5280.id_pe_authorityInfoAccess),
        MixedCriticality(CRLDP),
        Quiet(pdu_class=rfc5280.GeneralName),
        ExplicitEmpty(pdu_class=rfc5280.GeneralName),
        Broken(pdu_class=rfc5280.GeneralNames),
        OwnWrapper(pdu_class=rfc5280.AccessDescription),
        validation.ValidatorContainer(
            validators=[
                Seen(
                    "nested", predicate=general_name.create_generalname_type_predicate("iPAddress")
                )
            ],
            pdu_class=rfc5280.Extensions,
        ),
    ]


def tree() -> Any:
    return certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), validators()
    )


def certificate_der() -> bytes:
    """A certificate with a GeneralName of most kinds, in several extensions."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "walk.example.com")])
    uri = x509.UniformResourceIdentifier
    sans = [
        x509.DNSName("walk.example.com"),
        x509.IPAddress(IPv4Address("192.0.2.1")),
        x509.IPAddress(IPv6Address("2001:db8::1")),
        x509.RFC822Name("a@example.com"),
        uri("https://walk.example.com/"),
        x509.DirectoryName(name),
        x509.RegisteredID(ObjectIdentifier("1.2.3.4")),
        x509.DNSName("dNSName.example.com"),
    ]
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([uri("http://crl.example.com/0.crl")], None, None, None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS, uri("http://x.example.com/i")
                    )
                ]
            ),
            critical=False,
        )
    )
    signed = builder.sign(key, hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.DER)


def walk(container: Any, der: bytes) -> list[tuple[str, str, list[str]]]:
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
    return [
        (r.validator.name, str(r.node.path), [repr(d) for d in r.finding_descriptions])
        for r in container.validate(doc.root)
    ]


def test_pkilint_is_the_one_the_shortcuts_were_checked_against() -> None:
    """Else every shortcut is off (pkilint's own code runs): correct, but slower."""
    assert all(_pinned(name) for name in _PINNED)


def test_the_shortcuts_give_pkilints_results_with_the_empty_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    der = certificate_der()
    plain, indexed = tree(), tree()
    _index(indexed, empty_results=True)
    with caplog.at_level(logging.ERROR, "pkilint.validation"):
        expected = walk(plain, der)
        plain_log = [(r.getMessage(), r.exc_info and r.exc_info[0]) for r in caplog.records]
        caplog.clear()
        for _ in range(2):  # the second walk from the index
            assert walk(indexed, der) == expected
            got_log = [(r.getMessage(), r.exc_info and r.exc_info[0]) for r in caplog.records]
            assert got_log == plain_log
            caplog.clear()
    seen = {f for _, _, found in expected for f in found}
    for t in TYPES:  # every kind the certificate has was seen by its type's validator
        if t not in ("otherName", "x400Address", "ediPartyName"):
            assert any(f"type {t}" in f for f in seen), t
    assert any("lookalike" in f for f in seen)
    assert sum(f"criticality {CRLDP}" in f for f in seen) == 1  # the mixin ruled out one
    assert any(f"criticality {SAN}" in f for f in seen)
    assert any(f"type {SAN}" in f for f in seen)
    assert any("base.unhandled_exception" in f for f in seen)
    assert any(name == "ExplicitEmpty" and not found for name, _, found in expected)
    assert any(name == "Quiet" for name, _, _ in expected)


def test_without_the_empty_results_the_findings_are_the_same() -> None:
    der = certificate_der()
    plain, indexed = tree(), tree()
    _index(indexed)
    expected = walk(plain, der)
    got = walk(indexed, der)
    assert [r for r in got if r[2]] == [r for r in expected if r[2]]
    # only the empty results of validators that returned None are left out
    assert [r for r in got if not r[2]] == [r for r in expected if r[0] == "ExplicitEmpty"]


def test_a_generalname_predicate_is_recognized_only_when_it_is_pkilints() -> None:
    for t in TYPES:
        assert _generalname_type(general_name.create_generalname_type_predicate(t)) == t
    assert _generalname_type(lambda n: n.name == "dNSName") is None
    assert _generalname_type(None) is None
    assert _generalname_type(len) is None


def test_an_oid_check_is_asked_alone_only_below_pkilints_own_match() -> None:
    path = "certificate.tbsCertificate.extensions.0"
    for shortcut in (Criticality(SAN), TypeMatching(SAN)):
        ask = _asking(shortcut, path)
        assert ask is not None and ask is not _NEVER and ask != shortcut.match
    mixed = MixedCriticality(SAN)
    assert _asking(mixed, path) == mixed.match
    with_predicate = Criticality(SAN)
    with_predicate._predicate = lambda n: False
    assert _asking(with_predicate, path) == with_predicate.match


def test_the_cas_tree_takes_each_shortcut() -> None:
    """The shortcuts above are the ones the CA's own tree (pkilint's rules) runs through."""
    from pkilint.validation import ValidatorContainer

    container, _ = build_certificate_validator()
    every: list[Any] = []

    def collect(v: Any) -> None:
        every.append(v)
        if isinstance(v, ValidatorContainer):
            for child in v.validators:
                collect(child)

    collect(container)
    assert all(_wrapper_is_plain(v) for v in every)
    path = "certificate.tbsCertificate.subject"
    left_out = [v for v in every if v._pdu_class is None and _asking(v, path) is _NEVER]
    predicates = [v for v in every if _asking(v, path) is getattr(v, "_predicate", 0)]
    assert len(left_out) >= 10 and len(predicates) > len(left_out)
    dns = [v for v in every if _generalname_type(getattr(v, "_predicate", None)) == "dNSName"]
    assert dns and all(_asking(v, path + ".dNSName") is v._predicate for v in dns)
    oid_checks = [
        v
        for v in every
        if isinstance(v, ExtensionCriticalityValidator | validation.TypeMatchingValidator)
    ]
    assert len(oid_checks) >= 10
    assert all(_asking(v, path) != v.match for v in oid_checks)
