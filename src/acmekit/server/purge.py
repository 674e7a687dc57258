"""What the CA deletes once nothing needs it, and why that is safe (the statements are
in repos/purge.py; the settings are `[purge]`, config.PurgeSettings).

- An order never claimed for finalize, `grace` after it expired: it is invalid from its
  expiry on (RFC 8555 §7.1.6), and no certificate row names it.
- An order claimed for finalize that failed, only as long after its expiry as a
  validated authorization (below): it is the record of a certificate request (BR
  §5.4.1, kept per §5.4.3 and §5.5.2), and a precertificate may have been signed for it
  (CT logging failed after), which counts as issued (RFC 6962 §3.1) and names it. One
  claimed and not failed is left to recovery, which issues for it; one with a
  certificate is kept.
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
  CLOCK_SKEW behind, for processes whose clocks disagree; judged by the clock the rate
  limiter judges by: the database's where it reads the database's (`database_clock`).

A round reads at most its batches' rows, however many expired rows are kept: the walks
under the grace go on from where the last stopped (repos/purge.py).

Nothing else: certificates, CRLs, accounts, EAB keys and blocked keys are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from acmekit.database import to_us
from acmekit.server.config import PurgeSettings
from acmekit.server.nonces import CLOCK_SKEW
from acmekit.server.repos.purge import START, Cutoffs, Due, DueCount, Walk, Walked
from acmekit.server.schedule import SC081
from acmekit.server.store import Store

# The longest validity the Baseline Requirements ever allowed (§6.3.2, before 2026-03-15).
LONGEST_VALIDITY = max(step.max_validity for step in SC081)


# Where a serving CA records the grace and retention in force (`record_settings`), for
# `acmekit server db purge` run without the server's TOML file.
SETTING = "purge"


def record_settings(store: Store, settings: PurgeSettings) -> None:
    """Record the grace and retention in force, in seconds (the last process to start
    wins: processes sharing a database are meant to share a configuration)."""
    value = {
        "grace": settings.grace.total_seconds(),
        "retention": settings.retention.total_seconds(),
    }
    store.accounts.put_setting(SETTING, json.dumps(value, sort_keys=True))


def recorded_settings(store: Store, base: PurgeSettings) -> PurgeSettings | None:
    """`base` with the grace and retention a serving CA recorded; None if none did (or
    the record is not one this release reads)."""
    text = store.accounts.stored_setting(SETTING)
    if text is None:
        return None
    try:
        found = json.loads(text)
        grace, retention = float(found["grace"]), float(found["retention"])
    except (TypeError, KeyError, ValueError, OverflowError):
        return None
    return replace(base, grace=timedelta(seconds=grace), retention=timedelta(seconds=retention))


def cutoffs(settings: PurgeSettings, now: datetime, database_clock: bool = False) -> Cutoffs:
    """What is due at `now` (module docstring); the buckets' cutoff the database's clock
    less CLOCK_SKEW with `database_clock`."""
    short = now - settings.grace
    validated = min(short, now - LONGEST_VALIDITY - settings.retention)
    skew = int(CLOCK_SKEW.total_seconds() * 1_000_000)
    return Cutoffs(
        orders=to_us(short),
        authorizations=to_us(short),
        validated=to_us(validated),
        buckets=None if database_clock else to_us(now - CLOCK_SKEW),
        skew=skew,
    )


class Purger:
    """Runs the purge's batches: a few at a time from the housekeeping loop (`batches`),
    or all that are due (`everything`, the operator's command). It keeps where each walk
    stopped; a new Purger (a restart) starts them from the oldest rows again.
    `database_clock`: buckets are judged by the database's clock, as the rate limiter
    judges them (Authority: the real clock defers to the database's)."""

    def __init__(
        self,
        store: Store,
        settings: PurgeSettings,
        now: Callable[[], datetime],
        database_clock: bool = False,
    ) -> None:
        self._repo = store.purge
        self.settings = settings
        self._now = now
        self._database_clock = database_clock
        self._orders_at = START  # the last (expires, id) the grace's walks examined
        # ... and the orders' walk past the retention (None: `everything` has ended it)
        self._old_orders_at: tuple[int, str] | None = START
        self._authzs_at = START
        self._after = ""  # the last bucket key the walk looked at

    def _cutoffs(self) -> Cutoffs:
        return cutoffs(self.settings, self._now(), self._database_clock)

    def due(self, limit: int) -> DueCount:
        """What the purge would delete now (a dry run), counted along its walks a batch
        at a time, each walk stopping after `limit` rows examined: its reads are bounded
        however many rows are due (`DueCount.at_least` names the walks cut short)."""
        cut = self._cutoffs()
        size = min(self.settings.batch, limit)
        orders, _, more_orders = self._count_walk(self._repo.count_orders, cut, limit, size)
        authzs, challenges, more_authzs = self._count_walk(
            self._repo.count_authorizations, cut, limit, size
        )
        buckets, more_buckets = self._count_buckets(cut, limit, size)
        more = {Walk.ORDERS: more_orders, Walk.AUTHORIZATIONS: more_authzs}
        more[Walk.BUCKETS] = more_buckets
        counted = Due(orders, authzs, challenges, buckets)
        return DueCount(counted, frozenset(w for w, cut_short in more.items() if cut_short))

    @staticmethod
    def _count_walk(
        step: Callable[[Cutoffs, tuple[int, str], int], Walked], cut: Cutoffs, limit: int, size: int
    ) -> tuple[int, int, bool]:
        """One walk's due rows and their challenges, and whether it stopped at `limit`
        before its end."""
        at, examined, due, challenges = START, 0, 0, 0
        while examined < limit:
            asked = min(size, limit - examined)
            walked = step(cut, at, asked)
            due, challenges = due + walked.deleted, challenges + walked.challenges
            examined += walked.examined
            if walked.examined < asked or walked.last is None:
                return due, challenges, False
            at = walked.last
        # At the limit: cut short only if a row is left (exactly `limit` rows is exact).
        return due, challenges, step(cut, at, 1).examined > 0

    def _count_buckets(self, cut: Cutoffs, limit: int, size: int) -> tuple[int, bool]:
        after, examined, due = "", 0, 0
        while examined < limit:
            asked = min(size, limit - examined)
            found, spanned, last = self._repo.count_buckets(cut, after, asked)
            due += found
            examined += spanned
            if spanned < asked or last is None:
                return due, False
            after = last
        return due, self._repo.count_buckets(cut, after, 1)[1] > 0

    def batches(self, count: int) -> Due:
        """Up to `count` batches of each walk; each walk goes on where the previous call
        stopped, and stops early once it has reached the rows not yet due."""
        return self._batches(count, again=True)

    def _batches(self, count: int, again: bool) -> Due:
        cut = self._cutoffs()
        orders = self._orders(cut, count, again)
        return orders + self._authorizations(cut, count) + self._buckets(cut, count)

    def _orders(self, cut: Cutoffs, count: int, again: bool) -> Due:
        size = self.settings.batch
        done = 0
        for _ in range(count):
            if self._old_orders_at is None:
                break
            # On from where it stopped: the orders being issued it keeps would stop a
            # walk from the oldest at its first batch (repos/purge.py). At its end it
            # starts over (`again`), for one it passed that has failed since.
            old = self._repo.orders_old(cut, self._old_orders_at, size)
            done += old.deleted
            self._old_orders_at = old.last
            if old.examined < size:
                self._old_orders_at = START if again else None
                break
        for _ in range(count):
            step = self._repo.orders_grace(cut, self._orders_at, size)
            done += step.deleted
            self._orders_at = step.last or self._orders_at
            if step.examined < size:
                break
        return Due(orders=done)

    def _authorizations(self, cut: Cutoffs, count: int) -> Due:
        size = self.settings.batch
        done = Due()
        for _ in range(count):
            old = self._repo.authorizations_old(cut, size)
            done += Due(authorizations=old.deleted, challenges=old.challenges)
            if old.deleted < size:
                break
        for _ in range(count):
            step = self._repo.authorizations_grace(cut, self._authzs_at, size)
            done += Due(authorizations=step.deleted, challenges=step.challenges)
            self._authzs_at = step.last or self._authzs_at
            if step.examined < size:
                break
        return done

    def _buckets(self, cut: Cutoffs, count: int) -> Due:
        done = Due()
        for _ in range(count):
            buckets, last = self._repo.buckets(cut, self._after, self.settings.batch)
            done += Due(buckets=buckets)
            self._after = last or ""
            if last is None:
                break
        return done

    def everything(self) -> Due:
        """Every batch that is due, to the end of each walk, from the oldest rows. The
        orders' walk past the retention goes to its end once (not over again: with the
        buckets' walk also starting over, the two could end in the same round only
        rounds apart)."""
        self._orders_at = self._authzs_at = self._old_orders_at = START
        self._after = ""
        done = Due()
        try:
            while True:
                at = self._orders_at, self._authzs_at, self._old_orders_at
                step = self._batches(1, again=False)
                done += step
                moved = at != (self._orders_at, self._authzs_at, self._old_orders_at)
                if not (step.orders or step.authorizations or self._after or moved):
                    return done
        finally:
            self._old_orders_at = START  # its rounds walk it again (a failed run too)
