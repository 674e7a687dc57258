"""The fleet's status page: one server-rendered HTML document, no scripts.

It shows, from the shared inventory: sites counted by state, the certificates that
expire soonest, the sites whose last attempts failed (with the problem the CA or the
worker reported), the records owners of sites still waiting for one must publish once
(a dns-persist-01 site's TXT per CA, a dns-account-01 site's CNAME per CA account), the
edges that refused a deployment, each CA's orders, success rate
and time to issue by every fleet process over the last 24 hours (the hourly buckets
workers write), and each configured CA's health (consecutive failures of its own,
passed over until when); then, from this process's own FleetMetrics, the figures for
its own orders since it started. With a DNS API, a table of its secondaries, each in
step with the primary's serial or behind (`secondaries_section`).

Collecting (`collect`, a few read-only queries) is kept apart from rendering (`render`,
a pure function of a StatusReport), so the page can be tested without a server. Every
value taken from the inventory is escaped with `html.escape`: names are checked when a
site is added, but problem details come from CAs and edges and may hold anything.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from acmekit.fleet.delegation import account_delegations
from acmekit.fleet.dnssecondaries import SecondariesReport, SecondaryState
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import (
    STATS_WINDOW,
    CaSummary,
    CaWindow,
    FleetMetrics,
    summarize,
    window_label,
    window_start,
)
from acmekit.fleet.model import CaHealth, ChallengeMethod, DesiredState, SiteState, from_us
from acmekit.fleet.persist import records_for, templates
from acmekit.fleet.repos.ondemand import OnDemandSite
from acmekit.fleet.schema import certificates, deployments, sites

EXPIRING_LIMIT = 20
ON_DEMAND_LIMIT = 20  # on-demand sites listed (OnDemandRepository.recent)
FAILURE_LIMIT = 50
WAITING_LIMIT = 50  # sites whose owners have records to publish
DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Expiring:
    site_id: str
    name: str
    state: str
    not_after: int
    serial: str
    ca: str
    names: tuple[str, ...] = ()  # every name of the site, the first being `name`


@dataclass(frozen=True)
class Failure:
    site_id: str
    name: str
    state: str
    failure_count: int
    problem: str
    next_action_at: int | None
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class EdgeFailure:
    site_id: str
    name: str
    edge: str
    failure_count: int
    error: str
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToPublish:
    """A record the owner of a site with no certificate yet (or failing) publishes once."""

    site_id: str
    name: str
    names: tuple[str, ...]
    ca: str
    owner: str
    rtype: str  # TXT (dns-persist-01) or CNAME (dns-account-01)
    value: str


@dataclass(frozen=True)
class StatusReport:
    now: int
    counts: Mapping[SiteState, int]
    expiring: Sequence[Expiring]
    failures: Sequence[Failure]
    edge_failures: Sequence[EdgeFailure]
    cas: Sequence[CaSummary]
    health: Sequence[CaHealth] = ()
    recent: Sequence[CaWindow] = ()  # every process's orders per CA over `window`
    window: int = STATS_WINDOW
    to_publish: Sequence[ToPublish] = ()


# collecting ---------------------------------------------------------------------------


def collect(
    inventory: Inventory,
    metrics: FleetMetrics,
    now: int,
    cas: Sequence[str] = (),
    window: int = STATS_WINDOW,
    zone: str | None = None,
) -> StatusReport:
    """The report; `cas` are the CAs in use, in order, whose health is shown; `window`
    is how far back the fleet-wide figures per CA reach; `zone` is the delegation zone
    dns-account-01 CNAMEs point into."""
    health = list(inventory.cas.health(cas).values()) if cas else []
    recent = summarize(inventory.cas.stats(window_start(now, window)), cas)
    with inventory.engine.connect() as conn:
        return StatusReport(
            now=now,
            counts=inventory.sites.counts_by_state(),
            expiring=[_expiring(r) for r in conn.execute(_expiring_query())],
            failures=[_failure(r) for r in conn.execute(_failure_query())],
            edge_failures=[_edge_failure(r) for r in conn.execute(_edge_failure_query())],
            cas=metrics.summary(),
            health=health,
            recent=recent,
            window=window,
            to_publish=_to_publish(inventory, conn.execute(_waiting_query()), zone),
        )


_ACTIVE = sites.c.desired == str(DesiredState.ACTIVE)


def _expiring_query() -> sa.Select[Any]:
    current = sa.and_(
        certificates.c.site_id == sites.c.id,
        certificates.c.version == sites.c.current_version,
    )
    return (
        sa.select(sites.c.id, sites.c.primary_name, sites.c.state, certificates.c.not_after,
                  certificates.c.serial, certificates.c.ca, sites.c.names)
        .select_from(sites.join(certificates, current))
        .where(_ACTIVE)
        .order_by(certificates.c.not_after, sites.c.id)
        .limit(EXPIRING_LIMIT)
    )  # fmt: skip


def _expiring(row: Any) -> Expiring:
    return Expiring(
        row.id, row.primary_name, row.state, row.not_after, row.serial, row.ca,
        _names(row.names),
    )  # fmt: skip


def _names(stored: str) -> tuple[str, ...]:
    """A site's names as the inventory keeps them (a JSON list)."""
    try:
        found = json.loads(stored)
    except ValueError:
        return (stored,)
    return tuple(str(n) for n in found) if isinstance(found, list) else (str(found),)


_DRAFTS = (str(ChallengeMethod.DNS_PERSIST_01), str(ChallengeMethod.DNS_ACCOUNT_01))


def _waiting_query() -> sa.Select[Any]:
    """dns-persist-01 and dns-account-01 sites without a certificate, or failing: those
    whose owners may not have published what the fleet needs yet."""
    waiting = sa.or_(sites.c.current_version == 0, sites.c.failure_count > 0)
    return (
        sa.select(sites.c.id, sites.c.primary_name, sites.c.names, sites.c.method)
        .where(_ACTIVE, sites.c.method.in_(_DRAFTS), waiting)
        .order_by(sites.c.id)
        .limit(WAITING_LIMIT)
    )


def _to_publish(inventory: Inventory, rows: Iterable[Any], zone: str | None) -> list[ToPublish]:
    known = templates(inventory)
    accounts = inventory.cas.account_urls()
    found: list[ToPublish] = []
    for row in rows:
        names = _names(row.names)
        if row.method == ChallengeMethod.DNS_PERSIST_01:
            wildcard = any(n.startswith("*.") for n in names)
            for r in records_for(names, known, wildcard):
                found.append(
                    ToPublish(
                        row.id, row.primary_name, names, r["ca"], r["name"], "TXT", r["value"]
                    )
                )
        elif zone is not None:
            for ca, url in accounts.items():
                for owner, target in account_delegations(names, zone, {ca: url}).items():
                    found.append(
                        ToPublish(row.id, row.primary_name, names, ca, owner, "CNAME", target)
                    )
    return found


def _failure_query() -> sa.Select[Any]:
    return (
        sa.select(sites.c.id, sites.c.primary_name, sites.c.state, sites.c.failure_count,
                  sites.c.last_problem, sites.c.next_action_at, sites.c.names)
        .where(_ACTIVE, sites.c.failure_count > 0)
        .order_by(sites.c.failure_count.desc(), sites.c.id)
        .limit(FAILURE_LIMIT)
    )  # fmt: skip


def _failure(row: Any) -> Failure:
    return Failure(
        row.id, row.primary_name, row.state, row.failure_count,
        problem_text(row.last_problem), row.next_action_at, _names(row.names),
    )  # fmt: skip


def problem_text(stored: str | None) -> str:
    """A stored problem document as one line: `type: detail`."""
    if not stored:
        return ""
    try:
        doc = json.loads(stored)
    except ValueError:
        return stored
    if not isinstance(doc, dict):
        return str(doc)
    kind = str(doc.get("type", "")).removeprefix("urn:ietf:params:acme:error:")
    detail = str(doc.get("detail", ""))
    return f"{kind}: {detail}" if kind and kind != "about:blank" else detail


def _edge_failure_query() -> sa.Select[Any]:
    return (
        sa.select(sites.c.id, sites.c.primary_name, deployments.c.edge,
                  deployments.c.failure_count, deployments.c.last_error, sites.c.names)
        .select_from(sites.join(deployments, deployments.c.site_id == sites.c.id))
        .where(deployments.c.last_error.is_not(None))
        .order_by(deployments.c.failure_count.desc(), sites.c.id, deployments.c.edge)
        .limit(FAILURE_LIMIT)
    )  # fmt: skip


def _edge_failure(row: Any) -> EdgeFailure:
    return EdgeFailure(
        row.id, row.primary_name, row.edge, row.failure_count, row.last_error,
        _names(row.names),
    )  # fmt: skip


# rendering ----------------------------------------------------------------------------

# Tables never grow wider than the window (a laptop's 1366 px and up): any cell may wrap,
# even inside a URL or token that has no space, except a site's names, which wrap only
# between names, and numbers.
_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left;
         overflow-wrap: anywhere; vertical-align: top; }
th { background: #f3f3f3; overflow-wrap: normal; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.site .name { white-space: nowrap; }
.failing { color: #a00; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _time(us: int | None) -> str:
    if us is None:
        return ""
    return from_us(us).strftime("%Y-%m-%d %H:%M:%S UTC")


def _site(name: str, names: Sequence[str]) -> str:
    """Every name of a site, the first (its primary) first, each one unbroken."""
    shown = [name, *(n for n in names if n != name)]
    return " ".join(f'<span class="name">{_e(n)}</span>' for n in shown)


def _cell(css: str, text: str) -> str:
    return f'<td class="{_e(css)}">{text}</td>' if css else f"<td>{text}</td>"


def _row(cells: Iterable[tuple[str, str]]) -> str:
    """One table row from (css class, already escaped text) pairs."""
    return "<tr>" + "".join(_cell(css, text) for css, text in cells) + "</tr>"


def _table(table_id: str, headers: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p id="{table_id}">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return (
        f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _counts(report: StatusReport) -> str:
    rows = [
        _row([(str(state), _e(state)), ("n", str(report.counts.get(state, 0)))])
        for state in SiteState
    ]
    total = sum(report.counts.values())
    rows.append(_row([("", "<b>total</b>"), ("n", f"<b>{total}</b>")]))
    return _table("counts", ["state", "sites"], rows, "")


def _days_left(not_after: int, now: int) -> str:
    return f"{(not_after - now) / DAY_US:.1f}"


def _expiring_table(report: StatusReport) -> str:
    rows = [
        _row([
            ("site", _site(x.name, x.names)), (x.state, _e(x.state)),
            ("", _e(_time(x.not_after))),
            ("n", _days_left(x.not_after, report.now)), ("", _e(x.serial)), ("", _e(x.ca)),
        ])
        for x in report.expiring
    ]  # fmt: skip
    headers = ["site", "state", "not after", "days left", "serial", "CA"]
    return _table("expiring", headers, rows, "No certificates yet.")


def _failure_table(report: StatusReport) -> str:
    rows = [
        _row([
            ("site", _site(f.name, f.names)), (f.state, _e(f.state)),
            ("n", str(f.failure_count)),
            ("", _e(f.problem)), ("", _e(_time(f.next_action_at))),
        ])
        for f in report.failures
    ]  # fmt: skip
    headers = ["site", "state", "failures", "last error", "next attempt"]
    return _table("failures", headers, rows, "No failing sites.")


def _publish_table(report: StatusReport) -> str:
    rows = [
        _row([("site", _site(p.name, p.names)), ("", _e(p.ca)), ("", _e(p.owner)),
              ("", _e(p.rtype)), ("", f"<code>{_e(p.value)}</code>")])
        for p in report.to_publish
    ]  # fmt: skip
    headers = ["site", "CA", "name", "type", "value"]
    return _table("to-publish", headers, rows, "")


def _edge_table(report: StatusReport) -> str:
    rows = [
        _row([("site", _site(f.name, f.names)), ("", _e(f.edge)), ("n", str(f.failure_count)),
              ("", _e(f.error))])
        for f in report.edge_failures
    ]  # fmt: skip
    headers = ["site", "edge", "failures", "last error"]
    return _table("edge-failures", headers, rows, "Every edge has what it should.")


def _ca_rows(cas: Iterable[CaSummary | CaWindow]) -> list[str]:
    """A row per CA, in the same columns for this process's figures and the fleet's."""
    return [
        _row([
            ("", _e(c.ca)), ("n", str(c.issued)), ("n", str(c.failed)),
            ("n", f"{100 * c.success_rate:.1f}%"), ("n", f"{c.mean_seconds:.2f}"),
            ("n", f"{c.max_seconds:.2f}"),
        ])
        for c in cas
    ]  # fmt: skip


def _ca_table(report: StatusReport) -> str:
    rows = _ca_rows(report.cas)
    headers = ["CA", "issued", "failed", "success rate", "mean seconds", "max seconds"]
    return _table("cas", headers, rows, "No orders since this process started.")


def _recent_table(report: StatusReport) -> str:
    rows = _ca_rows(report.recent)
    headers = [
        "CA", "issued", "failed", "success rate", "mean seconds to issue",
        "max seconds to issue",
    ]  # fmt: skip
    return _table(
        "ca-recent", headers, rows, f"No orders in the last {window_label(report.window)}."
    )


def _health_table(report: StatusReport) -> str:
    rows = []
    for h in report.health:
        down = h.down_until is not None and h.down_until > report.now
        state = "passed over" if down else "up"
        rows.append(
            _row([
                ("", _e(h.ca)), ("failing" if down else "", _e(state)),
                ("n", str(h.failures)), ("", _e(_time(h.down_until) if down else "")),
                ("", _e(h.last_error or "")),
            ])
        )  # fmt: skip
    headers = ["CA", "state", "failures in a row", "passed over until", "last error"]
    return _table("ca-health", headers, rows, "No CAs configured.")


def on_demand_section(count: int, recent: Sequence[OnDemandSite]) -> tuple[str, str]:
    """(title, HTML) for the sites made on demand from names seen at edges."""
    rows = [
        _row([("", _e(s.name)), ("", _e(s.site_id)), (str(s.state), _e(s.state)),
              ("", _e(s.domain)), ("", _e(_time(s.created)))])
        for s in recent
    ]  # fmt: skip
    table = _table(
        "on-demand", ["name", "site", "state", "registered domain", "added"], rows,
        "No site was made on demand.",
    )  # fmt: skip
    title = f"On-demand sites ({count} kept; the {ON_DEMAND_LIMIT} made last)"
    return title, f'<p id="on-demand-count">{count}</p>{table}'


def _secondary_state(s: SecondaryState) -> tuple[str, str]:
    if s.serial is None:
        return "failing", "not answering"
    if s.in_step:
        return "", "in step"
    lag = s.lag or 0
    return "failing", f"behind by {lag}" if lag > 0 else f"ahead by {-lag}"


def secondaries_section(report: SecondariesReport) -> tuple[str, str]:
    """(title, HTML) for the DNS secondaries, as the DNS API's GET /secondaries has them."""
    title = "DNS secondaries"
    if not report.reachable:
        text = f"The DNS API {report.api} could not be asked: {report.error}"
        return title, f'<p id="dns-secondaries" class="failing">{_e(text)}</p>'
    rows = []
    for s in report.secondaries:
        css, state = _secondary_state(s)
        lag = "" if s.lag is None else str(s.lag)
        serial = "" if s.serial is None else str(s.serial)
        rows.append(_row([("", _e(s.secondary)), ("", _e(s.zone)), ("n", serial),
                          ("n", str(s.primary_serial)), ("n", lag), (css, _e(state))]))  # fmt: skip
    table = _table(
        "dns-secondaries", ["secondary", "zone", "serial", "primary serial", "lag", "state"],
        rows, "The DNS API names no secondary (acmekit dns --notify).",
    )  # fmt: skip
    in_step = sum(s.in_step for s in report.secondaries)
    return f"{title} ({in_step} of {len(report.secondaries)} in step)", table


def render(report: StatusReport, extra: Sequence[tuple[str, str]] = ()) -> str:
    """The whole page, as a string of HTML; `extra` are more (title, HTML) sections,
    shown before this process's own figures."""
    sections = [
        ("Sites by state", _counts(report)),
        (f"Expiring soonest (first {EXPIRING_LIMIT})", _expiring_table(report)),
        ("Failing sites", _failure_table(report)),
    ]
    if report.to_publish:
        title = f"Records for owners to publish once (first {WAITING_LIMIT} sites waiting)"
        sections.append((title, _publish_table(report)))
    sections += [
        ("Edges that failed", _edge_table(report)),
        (
            f"Certificate authorities, whole fleet (last {window_label(report.window)})",
            _recent_table(report),
        ),
    ]
    if report.health:
        sections.append(("Certificate authorities, in order of preference", _health_table(report)))
    sections.extend(extra)
    sections.append(("Certificate authorities (this process, since start)", _ca_table(report)))
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="30">'
        f"<title>acmekit fleet</title><style>{_STYLE}</style></head><body>"
        f"<h1>acmekit fleet</h1><p>As of {_e(_time(report.now))}.</p>{body}</body></html>\n"
    )
