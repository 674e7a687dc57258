"""Counters for `/metrics`, rendered in the Prometheus text exposition format (0.0.4),
and the fleet-wide figures per CA that the status page shows too.

Site counts by state come from the inventory when scraped (shared by every process).
The `SOONEST` sites whose current certificate expires first are exported with its
expiry and renewal time as `acmekit_fleet_certificate_expiration_timestamp_seconds` and
`acmekit_fleet_certificate_renewal_timestamp_seconds` (the shape of cert-manager's
`certmanager_certificate_*_timestamp_seconds`, labelled by `site` id and first `name`),
so that the usual "expires in under N days" alert rules still fire for the worst sites;
the rest of the fleet is counted per CA by the database (`acmekit_fleet_certificates`,
`..._expiring{within}`, the earliest expiry), so a scrape's size and its statements do
not grow with the number of sites. The fleet's sites due for renewal and failing are
gauges of their own.
Issuance outcomes and latency come twice: as this process's own counters and histogram
(`acmekit_fleet_issuances_total`, `acmekit_fleet_issuance_seconds`; Prometheus adds
up the processes), and as gauges over the last `STATS_WINDOW` from the inventory's
hourly buckets, which every worker writes (`acmekit_fleet_ca_recent_*`), so that any
one process can show what the whole fleet did.
With a DNS API, the state of its secondaries (`secondary_gauges`, dnssecondaries.py):
each one's SOA serial and how many serials it is behind the primary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from acmekit.fleet.dnssecondaries import SecondariesReport, SecondaryState
from acmekit.fleet.model import CaStatsBucket, SiteState
from acmekit.fleet.planner import DAY, HOUR

LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0)
STATS_WINDOW = DAY  # what the status page and the recent gauges cover
STATS_KEEP = 7 * DAY  # older buckets are deleted as new ones are written


def bucket_hour(now: int) -> int:
    """The start of the hour-long bucket that `now` falls in."""
    return now - now % HOUR


def window_start(now: int, window: int = STATS_WINDOW) -> int:
    """The first bucket inside `window` ending at `now`: the current hour's bucket and
    the ones before it, `window` in all, so the figures never reach further back."""
    return bucket_hour(now) - max(window - HOUR, 0)


def window_label(window: int) -> str:
    """`window` in words: "24 hours"."""
    hours = window // HOUR
    return "1 hour" if hours == 1 else f"{hours} hours"


@dataclass(frozen=True)
class CaOutcomes:
    """One CA's orders by outcome: what the fleet-wide figures and this process's own
    have in common (their further fields follow these three)."""

    ca: str
    issued: int
    failed: int

    @property
    def attempts(self) -> int:
        return self.issued + self.failed

    @property
    def success_rate(self) -> float:
        return self.issued / self.attempts if self.attempts else 0.0


@dataclass(frozen=True)
class CaWindow(CaOutcomes):
    """One CA's orders by every fleet process over a window; time to issue counts
    issued orders only (a failure may be a timeout, which says nothing of it)."""

    issued_seconds: float
    failed_seconds: float
    max_seconds: float

    @property
    def mean_seconds(self) -> float:
        return self.issued_seconds / self.issued if self.issued else 0.0


def attempt_bucket(ca: str, now: int, issued: bool, seconds: float) -> CaStatsBucket:
    """One order attempt at `ca` that ended at `now` after `seconds`, as a bucket."""
    return CaStatsBucket(
        ca, bucket_hour(now), int(issued), int(not issued),
        seconds if issued else 0.0, 0.0 if issued else seconds, seconds if issued else 0.0,
    )  # fmt: skip


def merge_buckets(a: CaStatsBucket, b: CaStatsBucket) -> CaStatsBucket:
    """Two buckets of one CA and hour as one."""
    return CaStatsBucket(
        a.ca, a.hour, a.issued + b.issued, a.failed + b.failed,
        a.issued_seconds + b.issued_seconds, a.failed_seconds + b.failed_seconds,
        max(a.max_seconds, b.max_seconds),
    )  # fmt: skip


def add_attempt(pending: dict[tuple[str, int], CaStatsBucket], attempt: CaStatsBucket) -> None:
    """Fold `attempt` into `pending`, the buckets a worker has yet to write."""
    key = (attempt.ca, attempt.hour)
    found = pending.get(key)
    pending[key] = attempt if found is None else merge_buckets(found, attempt)


def summarize(buckets: Iterable[CaStatsBucket], order: Sequence[str] = ()) -> list[CaWindow]:
    """The buckets added up per CA: those named in `order` (the CAs in use, by
    preference) first and in that order, then any others by name."""
    found: dict[str, CaWindow] = {}
    for b in buckets:
        w = found.get(b.ca, CaWindow(b.ca, 0, 0, 0.0, 0.0, 0.0))
        found[b.ca] = CaWindow(
            b.ca, w.issued + b.issued, w.failed + b.failed,
            w.issued_seconds + b.issued_seconds, w.failed_seconds + b.failed_seconds,
            max(w.max_seconds, b.max_seconds),
        )  # fmt: skip
    rank = {ca: n for n, ca in enumerate(order)}
    return sorted(found.values(), key=lambda w: (rank.get(w.ca, len(rank)), w.ca))


@dataclass(frozen=True)
class CaSummary(CaOutcomes):
    """One CA's issuance outcomes and latency, as the status page shows them."""

    mean_seconds: float
    max_seconds: float


@dataclass(frozen=True)
class SiteCertificate:
    """A site's current certificate as `/metrics` shows it (times in microseconds)."""

    site_id: str
    name: str
    not_after: int
    renew_at: int | None


SOONEST = 100  # sites with series of their own: those whose certificate expires first
EXPIRY_HORIZONS = ((DAY, "1d"), (7 * DAY, "7d"), (30 * DAY, "30d"))


@dataclass(frozen=True)
class CaCertificates:
    """Kept sites' current certificates from one CA: how many, the earliest notAfter
    (microseconds), and how many expire within each of `EXPIRY_HORIZONS` (or have)."""

    ca: str
    count: int
    earliest: int
    expiring: tuple[int, ...]


@dataclass(frozen=True)
class FleetFigures:
    """The inventory's figures, read when scraped: `certificates` are the `SOONEST`
    sites' only, `by_ca` counts them all."""

    certificates: Sequence[SiteCertificate] = ()
    renewal_due: int = 0
    failing: int = 0
    by_ca: Sequence[CaCertificates] = ()


def certificate_gauges(figures: FleetFigures) -> list[str]:
    """The soonest-expiring sites' expiry and renewal times, the certificates per CA,
    and the fleet's due and failing counts."""
    expiry = "acmekit_fleet_certificate_expiration_timestamp_seconds"
    renewal = "acmekit_fleet_certificate_renewal_timestamp_seconds"
    lines = [
        f"# HELP {expiry} The notAfter of the current certificate of the {SOONEST} sites "
        "whose certificate expires first (Unix seconds).",
        f"# TYPE {expiry} gauge",
    ]
    for c in figures.certificates:
        labels = f'site="{_esc(c.site_id)}",name="{_esc(c.name)}"'
        lines.append(f"{expiry}{{{labels}}} {c.not_after // 1_000_000}")
    lines += [
        f"# HELP {renewal} When the current certificate of the {SOONEST} sites whose "
        "certificate expires first is due for renewal.",
        f"# TYPE {renewal} gauge",
    ]
    for c in figures.certificates:
        if c.renew_at is not None:
            labels = f'site="{_esc(c.site_id)}",name="{_esc(c.name)}"'
            lines.append(f"{renewal}{{{labels}}} {c.renew_at // 1_000_000}")
    return [
        *lines,
        *per_ca_certificate_gauges(figures.by_ca),
        "# HELP acmekit_fleet_sites_renewal_due Sites whose certificate is due for renewal.",
        "# TYPE acmekit_fleet_sites_renewal_due gauge",
        f"acmekit_fleet_sites_renewal_due {figures.renewal_due}",
        "# HELP acmekit_fleet_sites_failing Sites failing (issuance or deployment).",
        "# TYPE acmekit_fleet_sites_failing gauge",
        f"acmekit_fleet_sites_failing {figures.failing}",
    ]


def per_ca_certificate_gauges(by_ca: Sequence[CaCertificates]) -> list[str]:
    """Kept sites' current certificates per CA: one series per CA and horizon."""
    name = "acmekit_fleet_certificates"
    earliest = "acmekit_fleet_certificate_expiration_earliest_timestamp_seconds"
    lines = [
        f"# HELP {name} Kept sites' current certificates, by issuing CA.",
        f"# TYPE {name} gauge",
        *(f'{name}{{ca="{_esc(c.ca)}"}} {c.count}' for c in by_ca),
        f"# HELP {name}_expiring Of those, the ones whose notAfter is within the horizon "
        "(or past).",
        f"# TYPE {name}_expiring gauge",
    ]
    for c in by_ca:
        for (_, label), n in zip(EXPIRY_HORIZONS, c.expiring, strict=True):
            lines.append(f'{name}_expiring{{ca="{_esc(c.ca)}",within="{label}"}} {n}')
    return [
        *lines,
        f"# HELP {earliest} The earliest notAfter of those, by CA (Unix seconds).",
        f"# TYPE {earliest} gauge",
        *(f'{earliest}{{ca="{_esc(c.ca)}"}} {c.earliest // 1_000_000}' for c in by_ca),
    ]


class FleetMetrics:
    def __init__(self) -> None:
        self.issued: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.deploy_failed: Counter[str] = Counter()
        self._latency_sum: dict[str, float] = {}
        self._latency_max: dict[str, float] = {}
        self._latency_buckets: Counter[tuple[str, float]] = Counter()

    def issuance(self, ca: str, ok: bool, seconds: float) -> None:
        (self.issued if ok else self.failed)[ca] += 1
        self._latency_sum[ca] = self._latency_sum.get(ca, 0.0) + seconds
        self._latency_max[ca] = max(self._latency_max.get(ca, 0.0), seconds)
        for bound in (*LATENCY_BUCKETS, float("inf")):
            if seconds <= bound:
                self._latency_buckets[(ca, bound)] += 1

    def summary(self) -> list[CaSummary]:
        """Per CA, in name order: outcomes, mean and worst time to issue."""
        out = []
        for ca in sorted(self._latency_sum):
            attempts = self.issued[ca] + self.failed[ca]
            mean = self._latency_sum[ca] / attempts if attempts else 0.0
            out.append(CaSummary(ca, self.issued[ca], self.failed[ca], mean, self._latency_max[ca]))
        return out

    def render(
        self,
        states: Mapping[SiteState, int],
        recent: Sequence[CaWindow] = (),
        window: int = STATS_WINDOW,
        figures: FleetFigures | None = None,
    ) -> str:
        """The exposition: `recent` are the fleet-wide figures over `window`; `figures`
        the inventory's per-site certificates and counts."""
        lines = [
            "# HELP acmekit_fleet_sites Sites by state.",
            "# TYPE acmekit_fleet_sites gauge",
            *(f'acmekit_fleet_sites{{state="{s}"}} {n}' for s, n in states.items()),
            "# HELP acmekit_fleet_issuances_total Certificate orders by outcome.",
            "# TYPE acmekit_fleet_issuances_total counter",
            *(f'acmekit_fleet_issuances_total{{ca="{_esc(c)}",outcome="success"}} {n}'
              for c, n in sorted(self.issued.items())),
            *(f'acmekit_fleet_issuances_total{{ca="{_esc(c)}",outcome="failure"}} {n}'
              for c, n in sorted(self.failed.items())),
            "# HELP acmekit_fleet_deploy_failures_total Failed deployments by edge.",
            "# TYPE acmekit_fleet_deploy_failures_total counter",
            *(f'acmekit_fleet_deploy_failures_total{{edge="{_esc(e)}"}} {n}'
              for e, n in sorted(self.deploy_failed.items())),
            "# HELP acmekit_fleet_issuance_seconds Time to issue, by CA.",
            "# TYPE acmekit_fleet_issuance_seconds histogram",
        ]  # fmt: skip
        for ca in sorted(self._latency_sum):
            lines.extend(self._histogram(ca))
        lines.extend(recent_gauges(recent, window))
        if figures is not None:
            lines.extend(certificate_gauges(figures))
        return "\n".join(lines) + "\n"

    def _histogram(self, ca: str) -> list[str]:
        name = "acmekit_fleet_issuance_seconds"
        out = [
            f'{name}_bucket{{ca="{_esc(ca)}",le="{b:g}"}} {self._latency_buckets[(ca, b)]}'
            for b in LATENCY_BUCKETS
        ]
        count = self.issued[ca] + self.failed[ca]
        out.append(f'{name}_bucket{{ca="{_esc(ca)}",le="+Inf"}} {count}')
        out.append(f'{name}_sum{{ca="{_esc(ca)}"}} {self._latency_sum[ca]:.6f}')
        out.append(f'{name}_count{{ca="{_esc(ca)}"}} {count}')
        return out


def recent_gauges(recent: Sequence[CaWindow], window: int) -> list[str]:
    """Gauges, not counters: the figures are over a sliding window, so they fall too."""
    over = f"by every fleet process over the last {window_label(window)}"
    name = "acmekit_fleet_ca_recent"
    lines = [
        f"# HELP {name}_window_seconds The window the {name}_* gauges cover.",
        f"# TYPE {name}_window_seconds gauge",
        f"{name}_window_seconds {window // 1_000_000}",
        f"# HELP {name}_orders Orders at each CA {over}, by outcome.",
        f"# TYPE {name}_orders gauge",
    ]
    for c in recent:
        lines.append(f'{name}_orders{{ca="{_esc(c.ca)}",outcome="success"}} {c.issued}')
        lines.append(f'{name}_orders{{ca="{_esc(c.ca)}",outcome="failure"}} {c.failed}')
    per_ca: list[tuple[str, str, Callable[[CaWindow], float]]] = [
        ("success_ratio", "Issued orders over all orders", lambda c: c.success_rate),
        ("issue_seconds_mean", "Mean time to issue", lambda c: c.mean_seconds),
        ("issue_seconds_max", "Longest time to issue", lambda c: c.max_seconds),
    ]
    for metric, what, value in per_ca:
        lines.append(f"# HELP {name}_{metric} {what} at each CA {over}.")
        lines.append(f"# TYPE {name}_{metric} gauge")
        lines.extend(f'{name}_{metric}{{ca="{_esc(c.ca)}"}} {value(c):.6g}' for c in recent)
    return lines


def secondary_gauges(report: SecondariesReport) -> list[str]:
    """The DNS API's reach, its primary's serial, and per secondary and zone: answers
    or not, its serial, its lag behind the primary (RFC 1982 distance) and in step or
    not. A secondary that does not answer has no serial and no lag series."""
    lines = [
        "# HELP acmekit_dns_api_up 1 if the fleet's DNS API answered GET /secondaries.",
        "# TYPE acmekit_dns_api_up gauge",
        f"acmekit_dns_api_up {int(report.reachable)}",
    ]
    if report.primary_serial is not None:
        lines += [
            "# HELP acmekit_dns_primary_serial The SOA serial of the DNS API's primary.",
            "# TYPE acmekit_dns_primary_serial gauge",
            f"acmekit_dns_primary_serial {report.primary_serial}",
        ]
    series: list[tuple[str, str, Callable[[SecondaryState], int | None]]] = [
        ("up", "1 if the secondary answered the zone's SOA query.", lambda s: s.serial is not None),
        ("serial", "The zone's SOA serial the secondary answers.", lambda s: s.serial),
        ("serial_lag", "Serials the secondary is behind the primary.", lambda s: s.lag),
        ("in_step", "1 if the secondary answers the primary's serial.", lambda s: s.in_step),
    ]  # fmt: skip
    for metric, what, value in series:
        name = f"acmekit_dns_secondary_{metric}"
        lines += [f"# HELP {name} {what}", f"# TYPE {name} gauge"]
        for s in report.secondaries:
            found = value(s)
            if found is not None:
                labels = f'secondary="{_esc(s.secondary)}",zone="{_esc(s.zone)}"'
                lines.append(f"{name}{{{labels}}} {int(found)}")
    return lines


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
