"""What `check` and `certificates` print of a certificate's SCTs (acmekit.certbot.ctcheck),
and the CA's reading of its `[ct] log_lists` (acmekit.server.ctsubmit)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.certbot.ctcheck import issuer_from, report_lines, sct_report
from acmekit.client.ctlogs import load_log_lists
from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import sct_list_extension
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server import ctsubmit
from acmekit.server.ca import (
    final_builder,
    load_or_create_issuer,
    precertificate_builder,
    sign_builder,
    subscriber_builder,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[x509.Certificate, x509.Certificate, list[ct.LogInfo]]:
    """A certificate with SCTs from two logs (of two operators), its issuer, the logs."""
    issuer = load_or_create_issuer(tmp_path_factory.mktemp("ca"), NOW)
    builder = subscriber_builder(
        issuer,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        [Identifier(IdentifierType.DNS, "report.test")],
        serial=777,
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        crl_url=None,
    )
    precert = sign_builder(precertificate_builder(builder), issuer)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
    infos = [
        ct.LogInfo(f"log {i}", k.public_key(), f"http://log{i}.test/", operator=f"op{i}")
        for i, k in enumerate(keys)
    ]
    entry = ct.SignedEntry.precert(ct.precert_entry(precert, issuer.intermediate_cert))
    scts = [ct.sign_sct(k, 1_780_000_000_000, entry) for k in keys]
    cert = sign_builder(final_builder(precert, sct_list_extension(scts)), issuer)
    return cert, issuer.intermediate_cert, infos


def test_scts_verified_against_a_list_and_judged(
    logged: tuple[x509.Certificate, x509.Certificate, list[ct.LogInfo]], tmp_path: Path
) -> None:
    cert, intermediate, infos = logged
    path = tmp_path / "list.json"
    path.write_text(ct.LogList(tuple(infos)).dumps())
    report = sct_report(cert, intermediate, load_log_lists([path]))
    assert [r["verified"] for r in report["scts"]] == [True, True]
    assert report["ct_policy"]["compliant"]
    lines = report_lines(report)
    assert lines[0] == "SCTs: 2"
    assert lines[1].startswith("  SCT: log 0 (http://log0.test/) at 2026-05-28T")
    assert lines[1].endswith(": signature ok")
    assert lines[-1].startswith("CT policy: compliant (2 SCTs from 2 operators")

    # A list that knows one log: one SCT verifies, the other's log is unknown.
    path.write_text(ct.LogList(tuple(infos[:1])).dumps())
    one = sct_report(cert, intermediate, load_log_lists([path]))
    assert [(r["known"], r["verified"]) for r in one["scts"]] == [(True, True), (False, False)]
    assert not one["ct_policy"]["compliant"]
    assert report_lines(one)[2].endswith(": not in the log list")


def test_scts_shown_unverified_without_list_or_issuer(
    logged: tuple[x509.Certificate, x509.Certificate, list[ct.LogInfo]],
) -> None:
    cert, intermediate, infos = logged
    plain = sct_report(cert, intermediate, None)
    assert [r["verified"] for r in plain["scts"]] == [None, None]
    assert plain["ct_policy"] is None
    assert report_lines(plain)[1].endswith(": not verified")
    orphan = sct_report(cert, None, ct.LogList(tuple(infos)))
    assert orphan["ct_policy"] == {
        "compliant": False,
        "reason": "the issuer is unknown: SCTs not verified",
    }
    assert issuer_from(cert, [cert, intermediate]) == intermediate


def test_a_certificate_without_scts(
    logged: tuple[x509.Certificate, x509.Certificate, list[ct.LogInfo]],
) -> None:
    _, intermediate, infos = logged
    key = ec.generate_private_key(ec.SECP256R1())
    bare = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(intermediate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    report = sct_report(bare, intermediate, ct.LogList(tuple(infos)))
    assert report["scts"] == []
    assert report["ct_policy"]["reason"] == "0 of 2 required SCTs from distinct logs"


def test_the_ca_refuses_a_bad_log_list(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match=re.escape(f"log list {bad}: not a v3 log list")):
        ctsubmit.load_log_lists([str(bad)])
    empty = tmp_path / "empty.json"
    empty.write_text(ct.LogList(()).dumps())
    with pytest.raises(ValueError, match="name no log"):
        ctsubmit.load_log_lists([str(empty)])
    with pytest.raises(ValueError, match=re.escape("missing.json")):
        ctsubmit.load_log_lists([str(tmp_path / "missing.json")])
