"""What the CA deletes once nothing needs it, and why that is safe (the statements are
in repos/purge.py; the settings are `[purge]`, config.PurgeSettings).

- An order without a certificate, `grace` after it expired: it is invalid from its expiry
  on (RFC 8555 §7.1.6), and no certificate row names it (one claimed for finalize and
  not failed is left to recovery, which issues for it).
- An authorization with its challenges (and its MPIC and DNSSEC evidence, columns of its
  row), `grace` after it expired. Each order that names it was made while it was live
  (newOrder reuses only authorizations that outlive the request by REUSE_MARGIN, and a
  new one outlives its order's creation), so the order expired at most its profile's
  order_lifetime later; the grace is at least every order_lifetime (config), so by then
  every such order is expired, failed, being issued or issued, and its status no longer
  reads the authorization. `Authority.order_view` counts an authorization that is gone
  as not valid all the same (an order made under a longer order_lifetime than today's).
  The same margin keeps a newOrder reusing an authorization at this moment safe: what
  it reuses expires a day from now at the earliest, far from the purge's cutoff.
- An authorization that was validated could have backed a certificate, whose validation
  is an audit record (Baseline Requirements §5.4.3, §5.5.2: kept two years after the
  certificate ceases to be valid). Such a certificate was ordered while the authorization
  was valid, so it expires at most the longest validity the BRs ever allowed (398 days,
  §6.3.2, which `check_profiles` holds every profile to) after the authorization did:
  a validated authorization is kept until `retention` after that bound. This keeps some
  that backed nothing as long, but needs no look-up of the orders that name it (a JSON
  text) and no write on the request path (docs/decisions.md).
- A rate-limit bucket whose TAT is behind now: a missing bucket is a full one
  (ratelimits.take, `tat is None or tat <= now`), so deleting it changes no decision.
  CLOCK_SKEW behind, for processes whose clocks disagree.

Nothing else: certificates, CRLs, accounts, EAB keys and blocked keys are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from acmekit.database import to_us
from acmekit.server.config import PurgeSettings
from acmekit.server.nonces import CLOCK_SKEW
from acmekit.server.repos.purge import Cutoffs, Due
from acmekit.server.schedule import SC081
from acmekit.server.store import Store

# The longest validity the Baseline Requirements ever allowed (§6.3.2, before 2026-03-15).
LONGEST_VALIDITY = max(step.max_validity for step in SC081)


def cutoffs(settings: PurgeSettings, now: datetime) -> Cutoffs:
    """What is due at `now` (module docstring)."""
    short = now - settings.grace
    validated = min(short, now - LONGEST_VALIDITY - settings.retention)
    return Cutoffs(
        orders=to_us(short),
        authorizations=to_us(short),
        validated=to_us(validated),
        buckets=to_us(now - CLOCK_SKEW),
    )


class Purger:
    """Runs the purge's batches: a few at a time from the housekeeping loop (`batches`),
    or all that are due (`everything`, the operator's command)."""

    def __init__(self, store: Store, settings: PurgeSettings, now: Callable[[], datetime]) -> None:
        self._repo = store.purge
        self.settings = settings
        self._now = now
        self._after = ""  # the last bucket key the walk looked at

    def due(self) -> Due:
        return self._repo.due(cutoffs(self.settings, self._now()))

    def batches(self, count: int) -> Due:
        """Up to `count` batches of each kind; the buckets' walk goes on where the
        previous call stopped."""
        cut = cutoffs(self.settings, self._now())
        size = self.settings.batch
        done = Due()
        for _ in range(count):
            orders = self._repo.orders(cut, size)
            done += Due(orders=orders)
            if orders < size:
                break
        for _ in range(count):
            authzs, challenges = self._repo.authorizations(cut, size)
            done += Due(authorizations=authzs, challenges=challenges)
            if authzs < size:
                break
        for _ in range(count):
            buckets, last = self._repo.buckets(cut, self._after, size)
            done += Due(buckets=buckets)
            self._after = last or ""
            if last is None:
                break
        return done

    def everything(self) -> Due:
        """Every batch that is due, to the end of each table."""
        done = Due()
        self._after = ""
        while True:
            step = self.batches(1)
            done += step
            if not (step.orders or step.authorizations or self._after):
                return done
