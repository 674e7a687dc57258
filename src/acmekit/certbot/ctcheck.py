"""The SCTs a certificate carries (RFC 6962 §3.3), shown and, with a log list, verified and
judged against the CT policy (acmekit.protocol.ctpolicy): for `check` and `certificates`.

An embedded SCT signs over the issuer's key hash, so verifying needs the issuer: the
lineage's chain.pem for `certificates`; for `check`, the chain the server sent, else a
certificate of the `--ca-bundle` that issued it, else the one its AIA caIssuers URL
(RFC 5280 §4.2.2.1) serves over plain HTTP.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import AuthorityInformationAccessOID

from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import (
    check_embedded,
    embedded_scts,
    judge_checks,
)

MAX_ISSUER_BYTES = 64 * 1024


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issuer_from(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    return next((c for c in candidates if c.subject == cert.issuer and _issued(cert, c)), None)


def fetch_issuer(cert: x509.Certificate, timeout: float) -> x509.Certificate | None:
    """The issuer from the certificate's AIA caIssuers (http only), if it names one."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for desc in aia:
        url = desc.access_location.value
        if desc.access_method != AuthorityInformationAccessOID.CA_ISSUERS:
            continue
        if not isinstance(url, str) or not url.startswith("http://"):
            continue
        # No proxy from the environment: the URL is fetched as it is named.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=timeout) as resp:
                body = resp.read(MAX_ISSUER_BYTES)
        except OSError:
            continue
        for load in (x509.load_der_x509_certificate, x509.load_pem_x509_certificate):
            try:
                issuer = load(body)
            except ValueError:
                continue
            if _issued(cert, issuer):
                return issuer
    return None


def sct_report(
    cert: x509.Certificate, issuer: x509.Certificate | None, logs: ct.LogList | None
) -> dict[str, Any]:
    """{"scts": [{"log", "log_id", "timestamp", "known", "verified"}], "ct_policy": {...} | None}.
    `verified` is None when nothing to verify against was given (no log list or no
    issuer); `ct_policy` is None without a log list."""
    try:
        scts = embedded_scts(cert)
    except ct.CtError as exc:
        return {"scts": [], "ct_policy": {"compliant": False, "reason": f"bad SCT list: {exc}"}}
    if logs is None or issuer is None:
        rows = [
            {
                "log": _name(logs.by_id(s.log_id) if logs else None, s.log_id),
                "log_id": ct.b64(s.log_id),
                "timestamp": _iso(s.timestamp),
                "known": logs is not None and logs.by_id(s.log_id) is not None,
                "verified": None,
            }
            for s in scts
        ]
        policy = None
        if logs is not None:
            policy = {"compliant": False, "reason": "the issuer is unknown: SCTs not verified"}
        return {"scts": rows, "ct_policy": policy}
    checks = check_embedded(cert, issuer, logs)
    rows = [
        {
            "log": _name(c.log, c.sct.log_id),
            "log_id": ct.b64(c.sct.log_id),
            "timestamp": _iso(c.sct.timestamp),
            "known": c.log is not None,
            "verified": c.valid,
        }
        for c in checks
    ]
    verdict = judge_checks(checks, cert)
    return {"scts": rows, "ct_policy": {"compliant": verdict.compliant, "reason": verdict.reason}}


def _name(info: ct.LogInfo | None, log_id: bytes) -> str:
    if info is None:
        return f"log {ct.b64(log_id)}"
    return f"{info.description} ({info.url})" if info.url else info.description


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def report_lines(report: dict[str, Any], indent: str = "") -> list[str]:
    """The report as `check` and `certificates` print it."""
    lines = [f"{indent}SCTs: {len(report['scts'])}"]
    for row in report["scts"]:
        if row["verified"] is None:
            state = "not verified"
        elif row["verified"]:
            state = "signature ok"
        else:
            state = "signature BAD" if row["known"] else "not in the log list"
        lines.append(f"{indent}  SCT: {row['log']} at {row['timestamp']}: {state}")
    policy = report["ct_policy"]
    if policy is not None:
        word = "compliant" if policy["compliant"] else "NOT compliant"
        lines.append(f"{indent}CT policy: {word} ({policy['reason']})")
    return lines
