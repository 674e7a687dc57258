"""Counters for `/metrics`, rendered in the Prometheus text exposition format (0.0.4).

Site counts by state come from the inventory when scraped (shared by every process);
issuance outcomes and latency are this process's own, labelled by CA.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from acmekit.fleet.model import SiteState

LATENCY_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0)


@dataclass(frozen=True)
class CaSummary:
    """One CA's issuance outcomes and latency, as the status page shows them."""

    ca: str
    issued: int
    failed: int
    mean_seconds: float
    max_seconds: float

    @property
    def attempts(self) -> int:
        return self.issued + self.failed

    @property
    def success_rate(self) -> float:
        return self.issued / self.attempts if self.attempts else 0.0


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

    def render(self, states: Mapping[SiteState, int]) -> str:
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


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
