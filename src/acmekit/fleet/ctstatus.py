"""Per-site Certificate Transparency compliance for `/metrics` and the status page, with
`acmekit fleet serve --ct-log-list FILE`: each site's current certificate's embedded SCTs
(RFC 6962 §3.3) verified against the log list, judged against the CT policy
(acmekit.protocol.ctpolicy). The issuer is the chain's second certificate.

A judgement is kept per (site, serial): a certificate does not change, so a scrape costs
one signature check per SCT only for certificates not seen before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from cryptography import x509

from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import check_embedded, judge_checks


@dataclass(frozen=True)
class SiteCt:
    site_id: str
    name: str
    serial: str
    scts: int  # embedded
    verified: int  # embedded and verified against the log list
    compliant: bool
    reason: str


class CtCompliance:
    def __init__(self, logs: ct.LogList) -> None:
        self.logs = logs
        self._seen: dict[tuple[str, str], SiteCt] = {}

    def judge(self, site_id: str, name: str, serial: str, fullchain_pem: str) -> SiteCt:
        key = (site_id, serial)
        found = self._seen.get(key)
        if found is not None:
            return found
        try:
            chain = x509.load_pem_x509_certificates(fullchain_pem.encode())
            if len(chain) < 2:
                raise ValueError("the chain has no issuer")
            checks = check_embedded(chain[0], chain[1], self.logs)
        except (ValueError, ct.CtError) as exc:
            judged = SiteCt(site_id, name, serial, 0, 0, False, f"unreadable: {exc}")
        else:
            verdict = judge_checks(checks, chain[0])
            valid = sum(c.valid for c in checks)
            judged = SiteCt(
                site_id, name, serial, len(checks), valid, verdict.compliant, verdict.reason
            )
        if len(self._seen) > 100_000:
            self._seen.clear()
        self._seen[key] = judged
        return judged

    def sites(self, rows: Iterable[tuple[str, str, str, str]]) -> list[SiteCt]:
        """(site id, name, serial, fullchain PEM) rows, judged."""
        return [self.judge(*row) for row in rows]


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def ct_gauges(sites: Sequence[SiteCt]) -> list[str]:
    compliant = "acmekit_fleet_certificate_ct_compliant"
    verified = "acmekit_fleet_certificate_scts_verified"
    lines = [
        f"# HELP {compliant} 1 if the site's certificate meets the CT policy, else 0.",
        f"# TYPE {compliant} gauge",
    ]
    for s in sites:
        labels = f'site="{_esc(s.site_id)}",name="{_esc(s.name)}"'
        lines.append(f"{compliant}{{{labels}}} {int(s.compliant)}")
    lines += [
        f"# HELP {verified} Embedded SCTs of the site's certificate that verify.",
        f"# TYPE {verified} gauge",
    ]
    for s in sites:
        labels = f'site="{_esc(s.site_id)}",name="{_esc(s.name)}"'
        lines.append(f"{verified}{{{labels}}} {s.verified}")
    lines += [
        "# HELP acmekit_fleet_sites_ct_noncompliant Sites whose certificate misses the CT policy.",
        "# TYPE acmekit_fleet_sites_ct_noncompliant gauge",
        f"acmekit_fleet_sites_ct_noncompliant {sum(not s.compliant for s in sites)}",
    ]
    return lines


def ct_section(sites: Sequence[SiteCt]) -> str:
    """The status page's CT table: every site, non-compliant ones first."""
    ordered = sorted(sites, key=lambda s: (s.compliant, s.name))
    ok = sum(s.compliant for s in sites)
    rows = "".join(
        f'<tr class="{"ok" if s.compliant else "bad"}"><td>{escape(s.name)}</td>'
        f"<td>{escape(s.serial)}</td><td>{s.verified} of {s.scts}</td>"
        f"<td>{'compliant' if s.compliant else 'NOT compliant'}</td>"
        f"<td>{escape(s.reason)}</td></tr>"
        for s in ordered
    )
    head = "<tr><th>site</th><th>serial</th><th>SCTs verified</th><th>CT policy</th><th></th></tr>"
    table = f'<table id="ct"><thead>{head}</thead><tbody>{rows}</tbody></table>'
    return f"<p>{ok} of {len(sites)} sites compliant.</p>{table}"
