"""Embedded SCTs and the CT policy, sans I/O: what a CA needs before it releases a
certificate and what a client or monitor checks in one it was given.

- RFC 6962 §3.3: the SCTs a certificate carries are in extension 1.3.6.1.4.1.11129.2.4.2
  (an OCTET STRING holding a `SignedCertificateTimestampList`); each one's signature covers
  the PreCert entry made of the issuer's key hash and the TBS without that extension.
- The policy, as Chrome's and Apple's CT policies state it for embedded SCTs: a certificate
  whose lifetime is at most 180 days needs 2 SCTs, a longer one 3, each from a distinct
  log, and the logs of at least 2 distinct operators. A CA may ask for another count
  (`required`; 0 means the policy's); the two-operator rule then applies whenever 2 or
  more SCTs are required.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.protocol.ct import (
    SCT_LIST_OID,
    CtError,
    LogInfo,
    LogList,
    SignedCertificateTimestamp,
    SignedEntry,
    decode_sct_list,
    encode_sct_list,
    final_certificate_entry,
    tbs_corresponds,
    verify_sct,
)

SHORT_LIFETIME = timedelta(days=180)


def merge_log_lists(lists: Sequence[LogList]) -> LogList:
    """One list of every log of `lists`, each log once (by log ID, the first kept)."""
    logs: dict[bytes, LogInfo] = {}
    for found in lists:
        for info in found.logs:
            logs.setdefault(info.log_id, info)
    return LogList(tuple(logs.values()))


def required_scts(lifetime: timedelta, configured: int = 0) -> int:
    """How many SCTs a certificate of `lifetime` needs: `configured`, or the policy's."""
    if configured > 0:
        return configured
    return 2 if lifetime <= SHORT_LIFETIME else 3


def lifetime_of(cert: x509.Certificate) -> timedelta:
    """RFC 5280 validity: both bounds inclusive, hence the extra second."""
    return cert.not_valid_after_utc - cert.not_valid_before_utc + timedelta(seconds=1)


def sct_list_extension(scts: Sequence[SignedCertificateTimestamp]) -> x509.UnrecognizedExtension:
    """The embedded-SCT extension's value: the TLS list inside a DER OCTET STRING."""
    body = encode_sct_list(scts)
    return x509.UnrecognizedExtension(SCT_LIST_OID, _octet_string(body))


def _octet_string(body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x04" + length + body


def _unwrap_octet_string(der: bytes) -> bytes:
    if len(der) < 2 or der[0] != 0x04:
        raise CtError("the SCT list extension is not an OCTET STRING")
    first = der[1]
    if first < 0x80:
        start, n = 2, first
    else:
        k = first & 0x7F
        start, n = 2 + k, int.from_bytes(der[2 : 2 + k], "big")
    if start + n != len(der):
        raise CtError("the SCT list extension has a bad length")
    return der[start:]


def embedded_scts(cert: x509.Certificate) -> list[SignedCertificateTimestamp]:
    """The SCTs in `cert`'s SCT list extension (none when it has none); CtError if the
    extension does not parse."""
    for ext in cert.extensions:
        if ext.oid == SCT_LIST_OID:
            value = ext.value
            raw = (
                value.value
                if isinstance(value, x509.UnrecognizedExtension)
                else value.public_bytes()
            )
            # cryptography hands the parsed extension's public_bytes without the OCTET
            # STRING for a parsed SCT list, and with it for an unrecognized one.
            try:
                return decode_sct_list(_unwrap_octet_string(raw))
            except CtError:
                return decode_sct_list(raw)
    return []


@dataclass(frozen=True)
class SctCheck:
    """One embedded SCT and what a log list says of it."""

    sct: SignedCertificateTimestamp
    log: LogInfo | None  # None: no log of the list has this ID
    valid: bool  # its signature verifies under that log's key

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.sct.timestamp / 1000, UTC)

    @property
    def log_name(self) -> str:
        if self.log is None:
            return f"unknown log {self.sct.log_id.hex()[:16]}"
        return self.log.description or self.log.url


def check_embedded(
    cert: x509.Certificate, issuer: x509.Certificate, logs: LogList
) -> list[SctCheck]:
    """Every embedded SCT of `cert` (issued by `issuer`), verified against `logs`."""
    entry = SignedEntry.precert(final_certificate_entry(cert, issuer))
    checks = []
    for sct in embedded_scts(cert):
        info = logs.by_id(sct.log_id)
        valid = info is not None and verify_sct(sct, entry, info.key)
        checks.append(SctCheck(sct, info, valid))
    return checks


@dataclass(frozen=True)
class Verdict:
    compliant: bool
    reason: str


def judge(
    valid: Sequence[tuple[LogInfo, SignedCertificateTimestamp]], lifetime: timedelta, required: int
) -> Verdict:
    """Whether verified SCTs (with their logs) meet the policy for `lifetime`."""
    need = required_scts(lifetime, required)
    logs = {info.log_id: info for info, _ in valid}
    operators = {info.operator for info in logs.values()}
    want_operators = min(2, need)
    if len(logs) < need:
        return Verdict(False, f"{len(logs)} of {need} required SCTs from distinct logs")
    if len(operators) < want_operators:
        return Verdict(False, f"SCTs from {len(operators)} operator(s), {want_operators} needed")
    return Verdict(True, f"{len(logs)} SCTs from {len(operators)} operators (need {need})")


def judge_checks(checks: Sequence[SctCheck], cert: x509.Certificate, required: int = 0) -> Verdict:
    valid = [(c.log, c.sct) for c in checks if c.valid and c.log is not None]
    return judge(valid, lifetime_of(cert), required)


def choose(
    valid: Sequence[tuple[LogInfo, SignedCertificateTimestamp]], lifetime: timedelta, required: int
) -> list[tuple[LogInfo, SignedCertificateTimestamp]] | None:
    """The SCTs to embed: one per log, every verified one (more than the minimum costs a
    few bytes and survives a log's retirement); None unless they meet the policy."""
    by_log: dict[bytes, tuple[LogInfo, SignedCertificateTimestamp]] = {}
    for info, sct in valid:
        by_log.setdefault(info.log_id, (info, sct))
    chosen = list(by_log.values())
    return chosen if judge(chosen, lifetime, required).compliant else None


def corresponds(precert: x509.Certificate, final: x509.Certificate) -> bool:
    """RFC 6962 §3.1/§3.3: the final certificate is the precertificate's TBS with the
    poison replaced by the SCT list, same issuer and same serial; nothing else differs.
    Read from the two TBS DERs, each cut once (ct.tbs_corresponds), not from the
    certificates' parsed extensions."""
    return precert.signature_algorithm_oid == final.signature_algorithm_oid and tbs_corresponds(
        precert.tbs_certificate_bytes, final.tbs_certificate_bytes
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
