"""Embedded SCTs and the CT policy (acmekit.protocol.ctpolicy), the [ct] settings, and the
precertificate / certificate pair the CA builds (acmekit.server.ca)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import (
    check_embedded,
    choose,
    corresponds,
    embedded_scts,
    judge,
    judge_checks,
    required_scts,
    sct_list_extension,
)
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    final_builder,
    final_certificate,
    load_or_create_issuer,
    precertificate,
    precertificate_builder,
    sign_builder,
    subscriber_builder,
)
from acmekit.server.config import load_config
from acmekit.server.lint import Linter, LintRefused

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _log(name: str, operator: str) -> tuple[ec.EllipticCurvePrivateKey, ct.LogInfo]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, ct.LogInfo(name, key.public_key(), f"http://{name}.test/", operator=operator)


def test_required_scts_follow_the_lifetime_unless_configured() -> None:
    assert required_scts(timedelta(days=90)) == 2
    assert required_scts(timedelta(days=180)) == 2
    assert required_scts(timedelta(days=181)) == 3
    assert required_scts(timedelta(days=400), configured=1) == 1


def test_two_operators_are_needed_for_two_scts() -> None:
    (k1, a), (k2, b), (k3, c) = _log("a", "op1"), _log("b", "op1"), _log("c", "op2")
    entry = ct.SignedEntry.x509(b"cert")
    sa, sb, sc = (ct.sign_sct(k, 1, entry) for k in (k1, k2, k3))
    ninety = timedelta(days=90)
    assert not judge([(a, sa), (b, sb)], ninety, 0).compliant  # one operator
    assert judge([(a, sa), (c, sc)], ninety, 0).compliant
    assert not judge([(a, sa), (c, sc)], timedelta(days=365), 0).compliant  # 3 needed
    assert judge([(a, sa)], ninety, 1).compliant
    # The same log twice counts once.
    assert choose([(a, sa), (a, sa)], ninety, 0) is None
    assert choose([(a, sa), (b, sb), (c, sc)], ninety, 0) == [(a, sa), (b, sb), (c, sc)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[x509.Certificate, ...]:
    issuer = load_or_create_issuer(tmp_path_factory.mktemp("ca"), NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = subscriber_builder(
        issuer,
        key.public_key(),
        [Identifier(IdentifierType.DNS, "pair.test")],
        serial=12345,
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        crl_url="http://crl.test/1.crl",
    )
    precert = sign_builder(precertificate_builder(builder), issuer)
    return precert, issuer.intermediate_cert


def test_final_certificate_corresponds_and_its_scts_verify(
    pair: tuple[x509.Certificate, ...],
) -> None:
    precert, intermediate = pair
    (k1, a), (k2, b) = _log("a", "op1"), _log("b", "op2")
    entry = ct.SignedEntry.precert(ct.precert_entry(precert, intermediate))
    scts = [ct.sign_sct(k, 1_700_000_000_000 + i, entry) for i, k in enumerate((k1, k2))]
    builder = final_builder(precert, sct_list_extension(scts))
    # Signed by a throwaway key here: correspondence is about the TBS, and the SCTs'
    # verification about the issuer's key hash, which names the intermediate.
    throwaway = ec.generate_private_key(ec.SECP256R1())
    final = builder.sign(throwaway, precert.signature_hash_algorithm)
    assert corresponds(precert, final)
    assert embedded_scts(final) == scts
    # cryptography reads the extension as the SCT list it is.
    parsed = final.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    )
    assert len(parsed.value) == 2
    logs = ct.LogList((a, b))
    checks = check_embedded(final, intermediate, logs)
    assert [c.valid for c in checks] == [True, True]
    assert judge_checks(checks, final).compliant
    # Against a list that lacks a log, or under another issuer, they do not verify.
    assert [c.valid for c in check_embedded(final, intermediate, ct.LogList((a,)))] == [True, False]
    assert not any(c.valid for c in check_embedded(final, final, logs))
    # A certificate whose TBS differs elsewhere does not correspond.
    other = final_builder(precert, sct_list_extension(scts[:1])).sign(
        throwaway, precert.signature_hash_algorithm
    )
    assert corresponds(precert, other)  # the SCT list may differ
    assert not corresponds(final, final)  # no poison in the first
    assert not corresponds(precert, precert)  # no SCT list in the second


@pytest.fixture(scope="module")
def issuer_and_builder(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Issuer, x509.CertificateBuilder]:
    issuer = load_or_create_issuer(tmp_path_factory.mktemp("ca-splice"), NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = subscriber_builder(
        issuer,
        key.public_key(),
        [
            Identifier(IdentifierType.DNS, "splice.example.com"),
            Identifier(IdentifierType.DNS, "b.example.org"),
        ],
        serial=678910,
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        crl_url="http://crl.example.net/2.crl",
        issuer_url="http://ca.example.net/issuer",
    )
    return issuer, builder


def test_the_final_certificate_cut_from_the_precertificate_is_the_builders(
    issuer_and_builder: tuple[Issuer, x509.CertificateBuilder],
) -> None:
    issuer, builder = issuer_and_builder
    precert = sign_builder(precertificate_builder(builder), issuer, Linter())
    (k1, a), (k2, b) = _log("a", "op1"), _log("b", "op2")
    entry = ct.SignedEntry.precert(ct.precert_entry(precert, issuer.intermediate_cert))
    scts = [ct.sign_sct(k, 1_700_000_000_000 + i, entry) for i, k in enumerate((k1, k2))]
    final = final_certificate(precert, scts, issuer, Linter())
    built = sign_builder(final_builder(precert, sct_list_extension(scts)), issuer)
    # The same TBS, to the byte, as re-encoding every extension through the builder.
    assert final.tbs_certificate_bytes == built.tbs_certificate_bytes
    assert final.signature_algorithm_oid == built.signature_algorithm_oid
    final.verify_directly_issued_by(issuer.intermediate_cert)
    assert corresponds(precert, final)
    assert embedded_scts(final) == scts
    checks = check_embedded(final, issuer.intermediate_cert, ct.LogList((a, b)))
    assert [c.valid for c in checks] == [True, True]
    assert not any(e.oid == ct.POISON_OID for e in final.extensions)
    # Only a precertificate's TBS is cut: one poison, no SCT list.
    with pytest.raises(ct.CtError):
        ct.final_tbs(final.tbs_certificate_bytes, scts)
    with pytest.raises(ct.CtError):
        ct.final_tbs(built.tbs_certificate_bytes, scts)


def test_the_precertificate_signed_from_its_linted_copy_is_the_builders(
    issuer_and_builder: tuple[Issuer, x509.CertificateBuilder], caplog: pytest.LogCaptureFixture
) -> None:
    issuer, builder = issuer_and_builder
    caplog.set_level(logging.DEBUG, logger="acmekit.server.lint")

    def logged() -> int:  # lint.log_warnings: at DEBUG every time, at WARNING once per code
        debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
        return len([r for r in debug if "lint warnings" in r.message])

    precert, linted = precertificate(builder, issuer, Linter())
    built = sign_builder(precertificate_builder(builder), issuer)
    assert precert.tbs_certificate_bytes == built.tbs_certificate_bytes
    assert precert.signature_algorithm_oid == built.signature_algorithm_oid
    precert.verify_directly_issued_by(issuer.intermediate_cert)
    # The profile's subject CN and SKI draw pkilint warnings, logged once: the final
    # certificate has the same ones and does not log them again.
    assert linted.warnings and all(code.startswith("cabf.") for code, _ in linted.warnings)
    assert logged() == 1
    key, _ = _log("a", "op1")
    entry = ct.SignedEntry.precert(ct.precert_entry(precert, issuer.intermediate_cert))
    final = final_certificate(precert, [ct.sign_sct(key, 1, entry)], issuer, Linter(), linted)
    final.verify_directly_issued_by(issuer.intermediate_cert)
    assert logged() == 1
    final_certificate(precert, [ct.sign_sct(key, 1, entry)], issuer, Linter())
    assert logged() == 2


def test_the_final_certificate_is_linted_before_the_key_signs(
    pair: tuple[x509.Certificate, ...], tmp_path: Path
) -> None:
    precert, _ = pair  # for pair.test, which the lint refuses as an internal name
    issuer = load_or_create_issuer(tmp_path, NOW)
    key, _ = _log("a", "op1")
    scts = [ct.sign_sct(key, 1, ct.SignedEntry.x509(b"x"))]
    with pytest.raises(LintRefused, match=r"cabf\.internal_domain_name"):
        final_certificate(precert, scts, issuer, Linter())


def test_a_final_certificate_that_differs_elsewhere_does_not_correspond(
    issuer_and_builder: tuple[Issuer, x509.CertificateBuilder],
    pair: tuple[x509.Certificate, ...],
) -> None:
    issuer, builder = issuer_and_builder
    precert = sign_builder(precertificate_builder(builder), issuer)
    key, _ = _log("a", "op1")
    entry = ct.SignedEntry.precert(ct.precert_entry(precert, issuer.intermediate_cert))
    scts = [ct.sign_sct(key, 1_700_000_000_000, entry)]
    final = final_certificate(precert, scts, issuer)
    other_precert, _ = pair  # another serial, key and names
    assert not corresponds(other_precert, final)
    # One byte changed in the serial of an otherwise identical TBS.
    serial = (678910).to_bytes(3, "big")
    tbs = final.tbs_certificate_bytes
    assert tbs.count(serial) == 1
    changed = tbs.replace(serial, (678911).to_bytes(3, "big"))
    assert not ct.tbs_corresponds(precert.tbs_certificate_bytes, changed)
    assert ct.tbs_corresponds(precert.tbs_certificate_bytes, tbs)
    assert not ct.tbs_corresponds(precert.tbs_certificate_bytes, b"\x30\x03\x02\x01")


def test_ct_settings_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "ca.toml"
    path.write_text('[ct]\nlog_lists = ["a.json", "b.json"]\nrequired_scts = 1\ntimeout = 3\n')
    config = load_config(path, {"ct_log_lists": ("c.json",)})
    assert config.ct.log_lists == ("a.json", "b.json", "c.json")
    assert (config.ct.required_scts, config.ct.timeout, config.ct.enabled) == (1, 3, True)
    assert not load_config(None, {}).ct.enabled
    path.write_text('[ct]\nlogs = ["a.json"]\n')
    with pytest.raises(ValueError, match="unknown settings in ct: logs"):
        load_config(path, {})
