"""Building a shard's CRL (RFC 5280 §5): fields, extensions, entries, signature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server.ca import Issuer, load_or_create_issuer
from acmekit.server.crl import build_crl, crl_url, shard_of
from acmekit.server.records import CertificateRecord

NOW = datetime(2026, 4, 1, tzinfo=UTC)
URL = "http://127.0.0.1:14080/crl/1.crl"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Issuer:
    return load_or_create_issuer(Path(tmp_path_factory.mktemp("ca")), NOW - timedelta(days=1))


def _revoked(serial: int, reason: int) -> CertificateRecord:
    return CertificateRecord(
        id=f"c{serial}", serial=format(serial, "x"), order_id=None, account_id=None, pem="x",
        identifiers=(Identifier(IdentifierType.DNS, "a.test"),), not_before=NOW,
        not_after=NOW + timedelta(days=90), issued=NOW, revoked_at=NOW - timedelta(hours=1),
        revocation_reason=reason,
    )  # fmt: skip


def test_shards_and_urls() -> None:
    assert [shard_of(s, 4) for s in (0, 1, 5, 4, 7)] == [0, 1, 1, 0, 3]
    assert crl_url("http://h:1", 3) == "http://h:1/crl/3.crl"


def test_crl_fields(issuer: Issuer) -> None:
    der = build_crl(
        issuer,
        [_revoked(0x1234, 1), _revoked(0x5678, 0)],
        number=7,
        url=URL,
        this_update=NOW,
        next_update=NOW + timedelta(days=1),
    )
    crl = x509.load_der_x509_crl(der)
    assert crl.issuer == issuer.intermediate_cert.subject
    assert crl.is_signature_valid(issuer.intermediate_cert.public_key())  # type: ignore[arg-type]
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + timedelta(days=1)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuer.intermediate_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.value.digest
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name == [x509.UniformResourceIdentifier(URL)]
    compromised = crl.get_revoked_certificate_by_serial_number(0x1234)
    assert compromised is not None
    reason = compromised.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    unspecified = crl.get_revoked_certificate_by_serial_number(0x5678)
    assert unspecified is not None and len(unspecified.extensions) == 0  # §5.3.1
    assert unspecified.revocation_date_utc == NOW - timedelta(hours=1)


def test_empty_crl(issuer: Issuer) -> None:
    der = build_crl(
        issuer, [], number=1, url=URL, this_update=NOW, next_update=NOW + timedelta(hours=1)
    )
    assert len(x509.load_der_x509_crl(der)) == 0
