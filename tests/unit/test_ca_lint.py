"""Lint before signing (acmekit.server.lint) over the CA's real certificate builder."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    DOMAIN_VALIDATED,
    Issuer,
    LeafShape,
    issue_certificate,
    load_or_create_issuer,
    new_serial,
    subscriber_builder,
)
from acmekit.server.crl import build_crl
from acmekit.server.lint import (
    Linter,
    LintKeys,
    LintMismatch,
    LintRefused,
    SigningKey,
    lint_certificate_der,
    lint_crl_der,
)
from acmekit.server.records import CertificateRecord
from acmekit.server.validation.reserved import parse_networks

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NAME = [Identifier(IdentifierType.DNS, "www.example.com")]
CRL_URL = "http://crl.example.com/crl/0.crl"
ISSUER_URL = "http://crl.example.com/issuer.der"
DEFAULT_SHAPE = LeafShape()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(tmp_path_factory.mktemp("lint") / "state", NOW)


def builder(
    issuer: Issuer,
    *,
    lifetime: timedelta = timedelta(days=90),
    names: list[Identifier] = NAME,
    shape: LeafShape = DEFAULT_SHAPE,
    crl_url: str = CRL_URL,
) -> x509.CertificateBuilder:
    return subscriber_builder(
        issuer,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        names,
        serial=new_serial(),
        not_before=NOW,
        not_after=NOW + lifetime,
        crl_url=crl_url,
        issuer_url=ISSUER_URL,
        shape=shape,
    )


def real_key(issuer: Issuer) -> SigningKey:
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_the_default_shape_has_no_errors_and_two_logged_warnings(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    # at WARNING the first time in the process, at DEBUG always (lint.log_warnings)
    with caplog.at_level(logging.DEBUG, "acmekit.server.lint"):
        cert = Linter().sign(builder(issuer), real_key(issuer))
    report = lint_certificate_der(der(cert))
    assert report.errors == ()
    assert {f.code for f in report.warnings} == {
        "cabf.serverauth.dv.common_name_attribute_present",
        "cabf.serverauth.subscriber.subject_key_identifier_extension_present",
    }
    assert "cabf.serverauth.dv.common_name_attribute_present" in caplog.text
    cert.verify_directly_issued_by(issuer.intermediate_cert)


def test_the_tlsserver_shape_lints_clean(issuer: Issuer) -> None:
    shape = LeafShape(common_name=False, subject_key_identifier=False, client_auth=False)
    cert = Linter().sign(
        builder(issuer, lifetime=timedelta(days=45), shape=shape), real_key(issuer)
    )
    report = lint_certificate_der(der(cert))
    assert (report.errors, report.warnings) == ((), ())
    assert cert.subject == x509.Name([])
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_what_is_signed_is_what_was_linted(issuer: Issuer) -> None:
    linter = Linter()
    b = builder(issuer)
    linted = linter.check(b, linter.keys.like(real_key(issuer)))
    final = linter.sign(b, real_key(issuer))
    assert final.tbs_certificate_bytes == linted.tbs_certificate_bytes
    assert final.signature != linted.signature
    with pytest.raises(Exception):  # noqa: B017 - the throwaway key is not the issuer's
        linted.verify_directly_issued_by(issuer.intermediate_cert)


class _OtherCurve(LintKeys):
    """A throwaway key of another type: the signature algorithm, so the TBS, differs."""

    def like(self, key: SigningKey) -> SigningKey:
        return ec.generate_private_key(ec.SECP384R1())


def test_a_tbs_that_differs_from_the_linted_one_is_refused(issuer: Issuer) -> None:
    with pytest.raises(LintMismatch, match="differs from the linted one"):
        Linter(keys=_OtherCurve()).sign(builder(issuer), real_key(issuer))


def test_a_400_day_lifetime_is_refused_naming_the_lint(issuer: Issuer) -> None:
    with pytest.raises(LintRefused) as err:
        Linter().sign(builder(issuer, lifetime=timedelta(days=400)), real_key(issuer))
    problem = err.value.problem
    assert problem.type == "urn:ietf:params:acme:error:serverInternal"
    assert "cabf.serverauth.certificate_validity_period_exceeds_200_days" in problem.detail


def test_a_missing_key_usage_is_refused_naming_the_lint(issuer: Issuer) -> None:
    # The CA's own leaf, rebuilt through the public API without its keyUsage extension.
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    without = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.intermediate_cert.subject)
        .public_key(key)
        .serial_number(new_serial())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=45))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(issuer.authority_key_identifier, critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.com")]), True)
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(DOMAIN_VALIDATED, None)]), False
        )
        .add_extension(
            x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ISSUER_URL)
            )]),
            False,
        )
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(CRL_URL)], None, None, None
        )]), False)
    )  # fmt: skip
    with pytest.raises(LintRefused) as err:
        Linter().sign(without, real_key(issuer))
    codes = {f.code for f in err.value.report.errors}
    assert any("key_usage" in code for code in codes), codes
    assert "cabf.serverauth.subscriber.key_usage_extension_absent" in err.value.problem.detail
    # Without the CA's stricter policy, the BRs' SHOULD is a warning only.
    assert Linter(as_errors=frozenset()).check(without, Linter().keys.like(real_key(issuer)))


def test_an_ignored_lint_no_longer_refuses(issuer: Issuer) -> None:
    code = "cabf.serverauth.certificate_validity_period_exceeds_200_days"
    cert = Linter(ignored=frozenset({code})).sign(
        builder(issuer, lifetime=timedelta(days=250)), real_key(issuer)
    )
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=250)


def test_a_linter_that_is_off_signs_without_looking(issuer: Issuer) -> None:
    cert = Linter(enabled=False).sign(
        builder(issuer, lifetime=timedelta(days=400)), real_key(issuer)
    )
    assert lint_certificate_der(der(cert)).errors


def test_internal_names_pass_only_where_the_operator_allowed_them(issuer: Issuer) -> None:
    names = [Identifier(IdentifierType.DNS, "www.flow.test")]
    local = "http://127.0.0.1:14080/crl/0.crl"
    with pytest.raises(LintRefused, match=r"cabf\.internal_domain_name"):
        Linter().sign(builder(issuer, names=names, crl_url=local), real_key(issuer))
    allowing = Linter(allowed_names=("test",), allowed_networks=parse_networks(["127.0.0.0/8"]))
    allowing.sign(builder(issuer, names=names, crl_url=local), real_key(issuer))
    with pytest.raises(LintRefused, match=r"cabf\.internal_domain_name"):
        allowing.sign(builder(issuer, names=[Identifier(IdentifierType.DNS, "a.internal")]),
                      real_key(issuer))  # fmt: skip


def test_issue_certificate_with_a_linter_lints(issuer: Issuer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(LintRefused):
        issue_certificate(
            issuer, request, NAME, serial=new_serial(), not_before=NOW,
            not_after=NOW + timedelta(days=201), crl_url=CRL_URL, issuer_url=ISSUER_URL,
            linter=Linter(),
        )  # fmt: skip
    cert = issue_certificate(
        issuer, request, NAME, serial=new_serial(), not_before=NOW,
        not_after=NOW + timedelta(days=90), crl_url=CRL_URL, issuer_url=ISSUER_URL,
        linter=Linter(),
    )  # fmt: skip
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia] == [ISSUER_URL]
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.2.1"]


def test_the_ca_crls_lint_clean(issuer: Issuer) -> None:
    revoked = [
        CertificateRecord(
            id=str(reason),
            serial=format(4096 + reason, "x"),
            order_id="o",
            account_id="a",
            pem=None,
            identifiers=(),
            not_before=NOW,
            not_after=NOW + timedelta(days=9),
            issued=NOW,
            revoked_at=NOW,
            revocation_reason=reason,
        )
        for reason in (0, 1, 4, 5)
    ]
    for entries in ([], revoked):
        crl = build_crl(
            issuer, entries, number=3, url=CRL_URL, this_update=NOW,
            next_update=NOW + timedelta(days=1),
        )  # fmt: skip
        assert lint_crl_der(crl).findings == ()
        assert Linter().crl(crl).errors == ()


def test_warming_for_ct_builds_the_precertificate_validator_too() -> None:
    """With CT on every issuance lints a precertificate first: its validator tree is
    built at start, not inside the first issuance."""
    from acmekit.server import lint

    with lint._lock:
        lint._validators.pop("precertificate", None)
    Linter().warm()
    assert "precertificate" not in lint._validators
    Linter().warm(precert=True)
    assert {"certificate", "crl", "precertificate"} <= lint._validators.keys()
