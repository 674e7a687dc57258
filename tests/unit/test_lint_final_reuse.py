"""The final certificate's lint from its precertificate's decoded document (lint.Decoded,
RFC 6962 §3.3) gives exactly the findings of a fresh lint of the final certificate, and
of plain pkilint: same codes, severities, paths and messages, in the same order, over the
varied certificates of test_lint_fast_same_findings. The reuse happens only for a final
certificate that is its precertificate with the poison replaced by the SCT list: any
other difference lints afresh, and a defect in the SCT list is found by the final lint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_lint_fast_same_findings import CASES, NOW, plain_pkilint

from acmekit.protocol import ct
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import (
    Issuer,
    Linted,
    final_certificate,
    load_or_create_issuer,
    new_serial,
    precertificate,
    precertificate_builder,
    subscriber_builder,
)
from acmekit.server.lint import (
    Decoded,
    Linter,
    LintRefused,
    lint_certificate_der,
    lint_final_der,
    lint_precertificate_der,
)
from acmekit.server.signing import assemble_signed, signed_parts

SCT_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(tmp_path_factory.mktemp("lint-reuse") / "state", NOW)


def lint_copy(issuer: Issuer, builder: x509.CertificateBuilder) -> bytes:
    """The precertificate's lint copy: signed by the lint's throwaway key, as ca.py does."""
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    copy = builder.sign(Linter().keys.like(key), hashes.SHA256())
    return copy.public_bytes(serialization.Encoding.DER)


def scts_for(pre_der: bytes, issuer: Issuer, count: int = 2) -> list[ct.SignedCertificateTimestamp]:
    precert = x509.load_der_x509_certificate(pre_der)
    entry = ct.SignedEntry.precert(ct.precert_entry(precert, issuer.intermediate_cert))
    return [ct.sign_sct(SCT_KEY, 1_780_000_000_000 + n, entry) for n in range(count)]


def leaf(issuer: Issuer, name: str, serial: int | None = None) -> x509.CertificateBuilder:
    """A subscriber certificate as the CA builds it."""
    return subscriber_builder(
        issuer,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        [Identifier(IdentifierType.DNS, name)],
        serial=serial or new_serial(),
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        crl_url="http://crl.example.com/crl/0.crl",
        issuer_url="http://crl.example.com/issuer.der",
    )


def final_copy(pre_der: bytes, tbs: bytes) -> bytes:
    """The final certificate's lint copy as ca.final_certificate makes it."""
    _, algorithm, signature = signed_parts(pre_der)
    return assemble_signed(tbs, algorithm, signature)


def findings(report: object) -> list[list[str | None]]:
    return [[f.severity.value, f.code, f.path, f.message] for f in report.findings]  # type: ignore[attr-defined]


def test_the_reused_document_gives_a_fresh_lints_findings(issuer: Issuer) -> None:
    Linter().warm(precert=True)
    finals: list[bytes] = []
    reused: list[list[list[str | None]]] = []
    clean = 0
    for name, case in CASES.items():
        pre_builder = precertificate_builder(case(issuer))
        try:
            pre_der = lint_copy(issuer, pre_builder)
        except ValueError:
            continue  # a shape `cryptography` will not sign twice with a poison
        tbs = x509.load_der_x509_certificate(pre_der).tbs_certificate_bytes
        if ct.TbsParts.parse(tbs).oids().count(ct.POISON_OID_DER) != 1:
            continue
        try:
            final_tbs = ct.final_tbs(tbs, scts_for(pre_der, issuer))
        except ct.CtError:
            continue  # "sct list" already has one: not a precertificate's TBS
        final_der = final_copy(pre_der, final_tbs)
        pre_report, decoded = lint_precertificate_der(pre_der)
        assert findings(pre_report) == findings(lint_certificate_der(pre_der, precert=True)), name
        clean += decoded.decoding_clean  # then the decoders run on the SCT list alone
        got = findings(lint_final_der(final_der, decoded))
        assert decoded.document_for(final_der) is None  # used once, and it was used
        assert got == findings(lint_certificate_der(final_der)), name
        finals.append(final_der)
        reused.append(got)
    assert len(finals) >= 25
    assert 20 <= clean < len(finals)  # both ways of the final lint were taken
    # and plain pkilint, in an interpreter that imports nothing of ours, agrees
    assert reused == plain_pkilint([(der, False) for der in finals])


def test_the_document_is_reused_only_for_the_poison_replaced_by_the_sct_list(
    issuer: Issuer,
) -> None:
    builder = leaf(issuer, "reuse.example.com")
    pre_der = lint_copy(issuer, precertificate_builder(builder))
    tbs = x509.load_der_x509_certificate(pre_der).tbs_certificate_bytes
    final_tbs = ct.final_tbs(tbs, scts_for(pre_der, issuer))
    _, decoded = lint_precertificate_der(pre_der)
    # another serial: same shape, one more field differs
    other = precertificate_builder(leaf(issuer, "reuse.example.com"))
    other_tbs = x509.load_der_x509_certificate(lint_copy(issuer, other)).tbs_certificate_bytes
    other_final = final_copy(pre_der, ct.final_tbs(other_tbs, scts_for(pre_der, issuer)))
    assert decoded.document_for(other_final) is None
    # other signature bytes on the same TBS
    _, algorithm, _ = signed_parts(pre_der)
    assert decoded.document_for(assemble_signed(final_tbs, algorithm, b"\x30\x00")) is None
    # the SCT list added but the poison kept (not a final certificate's TBS)
    parts = ct.TbsParts.parse(tbs)
    both = parts.encode([e for _, e in parts.extensions] + [ct.sct_list_extension_der([])])
    assert decoded.document_for(final_copy(pre_der, both)) is None
    # what is refused above was not used up: the real final certificate still reuses it
    assert decoded.document_for(final_copy(pre_der, final_tbs)) is not None
    assert decoded.document_for(final_copy(pre_der, final_tbs)) is None


def _long_form(tag: int, content: bytes) -> bytes:
    """A TLV with its length in four octets: valid BER, not DER (X.690 §10.1)."""
    return bytes([tag, 0x84]) + len(content).to_bytes(4, "big") + content


@pytest.mark.parametrize("where", ["certificate", "tbs", "extensions field", "extensions"])
def test_a_final_certificate_with_a_length_not_in_der_form_is_linted_afresh(
    issuer: Issuer, where: str
) -> None:
    """Every field and Extension equal, but a length around them written long: not DER,
    so pkilint's decoder refuses it; the reused document must not lint it clean. (Around
    the TBS `signed_parts` refuses such a length; inside it `parse_tbs` reads it.)"""
    pre_der = lint_copy(issuer, precertificate_builder(leaf(issuer, "ber.example.com")))
    tbs = x509.load_der_x509_certificate(pre_der).tbs_certificate_bytes
    parts = ct.TbsParts.parse(ct.final_tbs(tbs, scts_for(pre_der, issuer)))
    extensions = b"".join(e for _, e in parts.extensions)
    field = ct._tlv(0xA3, ct._tlv(0x30, extensions))
    if where == "extensions field":
        field = _long_form(0xA3, ct._tlv(0x30, extensions))
    elif where == "extensions":
        field = ct._tlv(0xA3, _long_form(0x30, extensions))
    inner = b"".join([*parts.before, field, *parts.after])
    final_tbs = _long_form(0x30, inner) if where == "tbs" else ct._tlv(0x30, inner)
    final_der = final_copy(pre_der, final_tbs)
    if where == "certificate":
        _, start, end = ct._tlv_at(final_der, 0, len(final_der))
        final_der = _long_form(0x30, final_der[start:end])
    _, decoded = lint_precertificate_der(pre_der)
    assert decoded.document_for(final_der) is None
    with pytest.raises(Exception) as fresh:
        lint_certificate_der(final_der)
    with pytest.raises(type(fresh.value)):
        lint_final_der(final_der, decoded)  # as the fresh lint: not reused


def test_a_malformed_sct_list_is_found_by_the_final_lint(issuer: Issuer) -> None:
    builder = leaf(issuer, "bad-sct.example.com")
    pre_der = lint_copy(issuer, precertificate_builder(builder))
    tbs = x509.load_der_x509_certificate(pre_der).tbs_certificate_bytes
    parts = ct.TbsParts.parse(tbs)
    # the list's own length says 9 bytes where there are 2: not a SignedCertificateTimestampList
    broken_list = ct._tlv(0x04, ct._tlv(0x04, b"\x00\x09\x00\x00"))
    broken = ct._tlv(0x30, ct.SCT_LIST_OID_DER + broken_list)
    kept = [e for oid, e in parts.extensions if oid != ct.POISON_OID_DER]
    final_der = final_copy(pre_der, parts.encode([*kept, broken]))
    _, decoded = lint_precertificate_der(pre_der)
    report = lint_final_der(final_der, decoded)
    assert findings(report) == findings(lint_certificate_der(final_der))
    assert [f.code for f in report.errors] == ["pkix.sct_list_extension_invalid_encoding"]
    # and an empty list (no SCT at all) too, by pkilint's count rule
    empty = final_copy(pre_der, parts.encode([*kept, ct.sct_list_extension_der([])]))
    _, decoded = lint_precertificate_der(pre_der)
    report = lint_final_der(empty, decoded)
    assert findings(report) == findings(lint_certificate_der(empty))
    assert [f.code for f in report.errors] == ["pkix.sct_list_empty"]


def test_the_ca_refuses_a_final_certificate_whose_sct_list_fails_its_lint(issuer: Issuer) -> None:
    builder = leaf(issuer, "ca-sct.example.com")
    linter = Linter()
    precert, linted = precertificate(builder, issuer, linter)
    assert isinstance(linted, Linted) and isinstance(linted.decoded, Decoded)
    # an SCT list with no SCT in it: pkilint's SCT count rule refuses it (an ERROR)
    with pytest.raises(LintRefused, match=r"pkix\.sct_list_empty"):
        final_certificate(precert, [], issuer, linter, linted)
    # the same through a fresh lint (no document to reuse)
    with pytest.raises(LintRefused, match=r"pkix\.sct_list_empty"):
        final_certificate(precert, [], issuer, linter)
    # with SCTs, both pass
    _, linted = precertificate(builder, issuer, linter)
    scts = scts_for(precert.public_bytes(serialization.Encoding.DER), issuer)
    final_certificate(precert, scts, issuer, linter, linted).verify_directly_issued_by(
        issuer.intermediate_cert
    )


def test_a_rebuilt_validator_tree_still_finds_the_precertificates_decoding_failures(
    issuer: Issuer,
) -> None:
    """Whether pkilint's decoders found something in the precertificate is judged by the
    tree that linted it, also after that tree was built again."""
    from acmekit.server import lint

    for name in ("precertificate", "certificate"):
        lint_precertificate_der(lint_copy(issuer, precertificate_builder(leaf(issuer, "a.test"))))
        with lint._lock:
            lint._validators.pop(name, None)
    pre_der = lint_copy(issuer, precertificate_builder(CASES["no eku"](issuer)))
    tbs = x509.load_der_x509_certificate(pre_der).tbs_certificate_bytes
    final_der = final_copy(pre_der, ct.final_tbs(tbs, scts_for(pre_der, issuer)))
    _, decoded = lint_precertificate_der(pre_der)
    assert not decoded.decoding_clean  # the empty EKU does not decode
    report = lint_final_der(final_der, decoded)
    assert findings(report) == findings(lint_certificate_der(final_der))
    assert "itu.invalid_asn1_syntax" in [f.code for f in report.errors]
