"""The worker: lease due sites, issue or renew, store the version, deploy, plan.

One pass (`run_once`) leases up to `batch` due sites and handles up to `concurrency`
of them at a time; whenever the sites it holds fall to `concurrency` or fewer (a slot
would soon idle), it leases more, up to `batch` held, until a lease finds fewer due
than it asked for. For each site:

1. A site whose desired state is removed is taken off every edge, then marked removed;
   its files stay if a site added since has the same first name (they are its now).
2. If the current certificate's CA offers ACME Renewal Information (RFC 9773) and the
   site's check is due (every `ari_interval`, or the CA's Retry-After, and right after
   an issuance), the worker asks. The window decides the renewal time, earlier or later
   than the lifetime rule (planner.renewal_time: the site's jitter places it inside the
   window, never later than just before expiry); no window, or a failed request, leaves
   the lifetime rule. A window already past means "renew now" (our CA says so for a
   revoked certificate): a ready backup certificate (below) is made current at once,
   without waiting for an issuance; otherwise the site renews now.
3. A site without a certificate, or past its renewal time, gets a new one, from the
   first CA (cas.py) that is up and, by the fleet's own count, has room under its
   certificates-per-registered-domain limit; a CA that cannot be reached, fails with a
   fault of its own or answers rateLimited is passed for the next at once. When no CA
   has room the site waits, without counting a failure, until the first one refills;
   when every CA is passed over (down), it waits the same way and reads "no CA
   reachable". A wait keeps the site's state: a failing site stays failing.
   Each order holds one of its CA's slots, which cap the orders in flight to that CA
   across every worker (cas.CaSlots); an order that finds them all held waits for one,
   and if none comes free in time the site is put off for a minute, again without a
   failure and without trying the next CA. Every attempt's outcome and duration is
   counted towards the inventory's hourly figures for its CA (for the status page);
   a worker writes its counts every `stats_flush` within a pass and at its end, in one
   transaction, rather than one per attempt.
   The new key is stored before the order is opened and the order URL (with its CA) as
   soon as it exists, so a worker that takes over an expired lease resumes that order
   at that CA (see acme.py). Renewals at the CA that issued the current certificate
   name it (RFC 9773 `replaces`); at another CA they cannot. The new version is stored
   by a compare-and-set on the site's current version, so one renewal yields exactly
   one current certificate however many workers race. If every CA fails and a backup
   outlives the current certificate, the backup is made current.
4. A site with `backup` set keeps a certificate from another CA than the current one,
   with its own key, issued and renewed on its own schedule (`fleet_backups`).
5. Every edge that lacks the current version gets it; a failing edge is recorded and
   retried with back-off while the others proceed. Only then is the state settled
   (`settled_state`): a new version is stored as issuing, and the site reads active
   once every edge has it, as SiteState says. A fresh certificate's renewal
   information (step 2) is asked after this step, so that asking never delays it.
6. The lease is released with the earliest of the planner's next action time, the next
   ARI check and the backup's renewal.

Any failure is recorded on the site (`failure_count`, `last_problem`) and retried
after the planner's back-off; nothing a site does can stop the loop, nor can a pass
the inventory fails (`run` logs it and goes on). When the failures
reach the planner's failing threshold the site shows as failing and the alert hook, if
any, runs once (alerts.py); it runs again only after a success and a new run of
failures. Time comes from the injected Clock only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509

from acmekit.client.errors import OrderNotValid
from acmekit.clock import Clock
from acmekit.domains import registered_domains
from acmekit.fleet import planner
from acmekit.fleet.acme import ari_cert_id, key_from_pem, key_to_pem, new_key
from acmekit.fleet.alerts import Alert, AlertHook
from acmekit.fleet.capability import FleetCannotValidate, is_own_fault
from acmekit.fleet.cas import (
    CaBusy,
    CaEntry,
    CaPool,
    CaSlots,
    SlotTiming,
    is_ca_fault,
    is_rate_limited,
)
from acmekit.fleet.deploy import Deployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import Issuer, OrderRequest, RenewalInfoSource, RenewalWindow
from acmekit.fleet.metrics import FleetMetrics, add_attempt, attempt_bucket
from acmekit.fleet.model import (
    BackupCert,
    CaStatsBucket,
    CertVersion,
    DesiredState,
    Site,
    SiteState,
    to_us,
)
from acmekit.fleet.repos.base import KEEP, Keep
from acmekit.fleet.repos.sites import OptionsChange, SiteChange
from acmekit.protocol.csr import make_csr
from acmekit.protocol.problems import AcmeError

log = logging.getLogger(__name__)
# A CA's http-01 problem detail quotes the challenge URL; its token stays out of our log.
_CHALLENGE_TOKEN = re.compile(r"(/\.well-known/acme-challenge/)[A-Za-z0-9_-]+")


NO_CA_REACHABLE = "no CA reachable: every CA is passed over after an outage or failures"


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerConfig:
    owner: str = field(default_factory=worker_id)
    lease: int = 15 * planner.MINUTE  # longer than one issuance may take
    batch: int = 50
    concurrency: int = 20
    idle_sleep: float = 2.0  # seconds between passes that found nothing due
    ari_interval: int = 6 * planner.HOUR  # how often to ask a CA about a certificate
    backup_retry: int = 30 * planner.MINUTE  # after a backup issuance failed everywhere
    slot_lease: int = 2 * planner.MINUTE  # how long a dead worker's CA slot stays held
    slot_wait: float = 120.0  # seconds an order may wait for a CA slot (a quarter of
    # `lease` at most, so that the site is still held when the order starts)
    stats_flush: int = 10 * planner.SECOND  # how often a pass writes its figures per CA
    # On-demand sites still without a certificate this long after they were made are
    # removed, and removed ones' rows deleted (repos/ondemand.py `prune`); at least the
    # on-demand limit's window per domain (7 days), which counts those rows.
    on_demand_retention: int = 7 * planner.DAY
    prune_every: int = 10 * planner.MINUTE  # how often a worker prunes them
    policy: planner.Policy = planner.DEFAULT_POLICY


def problem_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AcmeError):
        return exc.problem.to_json()
    if isinstance(exc, FleetCannotValidate):
        return {"type": "about:blank", "detail": str(exc)}
    return {"type": "about:blank", "detail": f"{type(exc).__name__}: {exc}"}


@dataclass(frozen=True)
class Outcome:
    """What an issuance attempt came to."""

    site: Site | None = None  # the site with its new current version
    problem: dict[str, Any] | None = None
    wait_until: int | None = None  # no CA may take the site before then
    lost: bool = False  # another worker has the site
    current: CertVersion | None = None  # the new current version, with `site`
    note: str | None = None  # why the site waits (with `wait_until`)


@dataclass(frozen=True)
class Issued:
    pem: str
    ca: str


@dataclass(frozen=True)
class EdgeReport:
    """How a site's current certificate stands on the edges after a deployment."""

    worst: int  # the worst failing edge's failure count (0: none failed)
    missing: int  # edges without the current version
    # (edge, version, error) not yet recorded: written with the lease's release
    outcomes: tuple[tuple[str, int, str | None], ...] = ()


def settled_state(
    failure_count: int,
    has_certificate: bool,
    edges: EdgeReport,
    policy: planner.Policy = planner.DEFAULT_POLICY,
) -> SiteState:
    """What a site is once its turn is over. Active means its current certificate is on
    every edge (model.SiteState); one stored but not yet everywhere still shows as
    issuing, and as failing once an edge has refused it `failing_after` times. Failed
    issuances in a row keep it failing whatever else holds."""
    if failure_count >= policy.failing_after:
        return SiteState.FAILING
    if not has_certificate:
        return SiteState.PENDING
    if edges.missing == 0:
        return SiteState.ACTIVE
    return SiteState.FAILING if edges.worst >= policy.failing_after else SiteState.ISSUING


class Worker:
    def __init__(
        self,
        inventory: Inventory,
        issuer: Issuer | CaPool,
        deployers: Sequence[Deployer],
        clock: Clock,
        config: WorkerConfig | None = None,
        metrics: FleetMetrics | None = None,
        alert: AlertHook | None = None,
    ) -> None:
        self.inventory = inventory
        self.alert = alert
        self.pool = issuer if isinstance(issuer, CaPool) else CaPool.single(issuer)
        self.deployers = tuple(deployers)
        self.clock = clock
        self.config = config or WorkerConfig()
        self.metrics = metrics or FleetMetrics()
        self._slots = asyncio.Semaphore(self.config.concurrency)
        wait = min(self.config.slot_wait, self.config.lease / 4 / planner.SECOND)
        self.ca_slots = CaSlots(
            inventory, self.owner, self.now, SlotTiming(self.config.slot_lease, wait)
        )
        self._stats: dict[tuple[str, int], CaStatsBucket] = {}  # not yet written
        self._woken = asyncio.Event()
        self._stats_written = self.now()
        self._pruned_at: int | None = None
        self._multi = len(self.pool.entries) > 1
        self._ari = any(isinstance(e.issuer, RenewalInfoSource) for e in self.pool.entries)

    @property
    def owner(self) -> str:
        return self.config.owner

    def now(self) -> int:
        return to_us(self.clock.now())

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until `stop` is set. A pass the inventory fails (a database
        restarting, failing over) is logged, and the next begins after the idle sleep:
        the worker, and the API and responder sharing its process, go on."""
        while not stop.is_set():
            self.prune()
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("a pass failed; the next begins after the idle sleep")
                handled = 0
            if handled == 0:
                await self._idle()

    def prune(self) -> None:
        """Forget on-demand sites that came to nothing, every `prune_every`. A failure is
        logged and tried again at the next pass: the pass must go on."""
        now = self.now()
        if self._pruned_at is not None and now - self._pruned_at < self.config.prune_every:
            return
        try:
            pruned = self.inventory.on_demand.prune(now, self.config.on_demand_retention)
        except Exception:
            log.exception("on-demand sites not pruned; tried again at the next pass")
            return
        self._pruned_at = now
        if pruned.given_up or pruned.forgotten:
            log.info(
                "on-demand: %d sites without a certificate removed, %d rows forgotten",
                pruned.given_up, pruned.forgotten,
            )  # fmt: skip

    def wake(self) -> None:
        """Cut the idle sleep short: a site was just added (an on-demand site, whose
        customer is waiting at an edge)."""
        self._woken.set()

    async def _idle(self) -> None:
        sleep = asyncio.ensure_future(self.clock.sleep(self.config.idle_sleep))
        woken = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait((sleep, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleep, woken):
                task.cancel()
            self._woken.clear()

    async def run_once(self) -> int:
        """Handle due sites, leasing more as slots free up, until none is left due (see
        the top of the module); how many were handled."""
        batch, slots = self.config.batch, self.config.concurrency
        held: set[asyncio.Task[None]] = set()
        handled, more = 0, True
        try:
            while True:
                if more and len(held) <= slots and len(held) < batch:
                    want = batch - len(held)
                    try:
                        leased = self.inventory.sites.lease_due(
                            self.owner, self.now(), self.config.lease, want
                        )
                    except Exception:
                        if not held:
                            raise  # `run` logs it, and sleeps
                        # The turns under way (orders, deployments) are finished, not
                        # cancelled: the pass ends after them.
                        log.exception("leasing failed; the sites held are finished first")
                        leased, more = [], False
                    else:
                        more = len(leased) == want
                    handled += len(leased)
                    held.update(asyncio.create_task(self._guarded(s)) for s in leased)
                if not held:
                    return handled
                done, held = await asyncio.wait(held, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # only what _guarded lets through: cancellation and such
                if self.now() - self._stats_written >= self.config.stats_flush:
                    self.flush_stats()
        finally:
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
            self.flush_stats()

    def flush_stats(self) -> None:
        """Write the order attempts counted since the last write to the inventory. If
        that fails they are kept for the next one: a pass must not end on figures."""
        pending, self._stats = list(self._stats.values()), {}
        if not pending:
            return
        try:
            self.inventory.cas.add_stats(pending)
        except Exception:
            log.exception("figures per CA not written; kept for the next try")
            for bucket in pending:
                add_attempt(self._stats, bucket)
            return
        self._stats_written = self.now()

    async def _guarded(self, site: Site) -> None:
        async with self._slots:
            try:
                await self.handle(site)
            except Exception:
                log.exception("site %s: unexpected failure", site.id)
                # A minute whatever the API asked meanwhile: `release` makes a removed
                # site due at once, and one whose removal always fails would be taken
                # pass after pass, with no idle sleep between (a traceback each time).
                now = self.now()
                self.inventory.sites.defer(
                    site.id, self.owner, now + planner.MINUTE, site.failure_count
                )

    async def handle(self, site: Site) -> None:
        if site.desired == DesiredState.REMOVED:
            await self._remove(site)
            return
        outcome = Outcome()
        current = self.inventory.sites.current(site)
        due = planner.is_due(self.now(), site.renew_at)
        if not due and self._ari:
            site, due, _ = await self._check(site, current)
            current = self._current(site, current)
        if due:
            outcome = await self._renew(site, current)
            if outcome.lost:
                return  # another worker has the site
            if outcome.site is not None:
                site, current = outcome.site, outcome.current
            if outcome.problem is not None and self._promote(site, current, "issuance failed"):
                site = self.inventory.sites.site(site.id) or site
                current = self._current(site, current)
        edges = await self._deploy(site, current, fresh=outcome.site is not None)
        checked: int | None = None
        if outcome.site is not None and self._ari:
            # A fresh certificate follows its CA's window from the start; asked once it
            # is on the edges, so that asking never delays a deployment. Its next check
            # was cleared with the new version (no need to read it), and what the answer
            # sets is written with the release.
            site, checked = await self._check_fresh(site, current, edges)
            fresh, current = current, self._current(site, current)
            if current is not fresh:  # the CA asked for renewal now: the backup went in
                edges = await self._deploy(site, current)
        if self._multi and self.inventory.sites.options(site.id).backup:
            self._record(site, edges)
            edges = replace(edges, outcomes=())
            await self._keep_backup(site, current)
        alert, recorded = self._finish(site, current, outcome, edges, checked)
        if not recorded:
            await self._lost(site, current)
        if alert is not None:
            await self._raise_alert(alert)

    async def _raise_alert(self, alert: Alert) -> None:
        log.warning(
            "site %s is failing after %d attempts: %s",
            alert.site_id, alert.failures, alert.problem.get("detail", ""),
        )  # fmt: skip
        if self.alert is None:
            return
        try:
            await self.alert(alert)
        except Exception:
            log.exception("site %s: alert hook failed", alert.site_id)

    def _current(self, site: Site, known: CertVersion | None) -> CertVersion | None:
        """The site's current version: `known` if it still is, else read again."""
        if known is not None and known.version == site.current_version:
            return known
        return self.inventory.sites.current(site)

    # renewal information and backups ----------------------------------------------------

    def _ari_source(self, ca: str) -> RenewalInfoSource | None:
        entry = self.pool.get(ca)
        source = None if entry is None else entry.issuer
        return source if isinstance(source, RenewalInfoSource) else None

    async def _check(
        self,
        site: Site,
        current: CertVersion | None,
        stored_check: int | Keep | None = KEEP,
        window: RenewalWindow | None = None,
        fresh: bool = False,
    ) -> tuple[Site, bool, int | None]:
        """Ask the CA about the current certificate if a check is due: (site, due now,
        the next check as now stored, if this wrote it). `stored_check` is the site's
        next check when the caller knows it (`KEEP`: read it); `window`, the CA's
        answer if the caller has it already; `fresh`, the certificate was issued in
        this turn."""
        now = self.now()
        if isinstance(stored_check, Keep):
            stored_check = self.inventory.sites.options(site.id).next_check
        if current is None or (stored_check is not None and now < stored_check):
            return site, False, None
        source = self._ari_source(current.ca)
        if source is None:
            return site, False, None
        if window is None:
            try:
                window = await source.renewal_window(current.fullchain_pem)
            except Exception as exc:
                log.info("site %s: renewal information from %s: %s", site.id, current.ca, exc)
        next_check = self._next_check(now, window)
        check = OptionsChange(next_check=next_check)
        if window is not None and window.end <= now:
            # Due from now until a renewal succeeds, so that a failed one is retried
            # after the back-off rather than at the next check. Not a certificate just
            # issued: a CA that says so of every one would be asked for one after another.
            due = SiteChange() if fresh else SiteChange(renew_at=now)
            self.inventory.sites.update_leased(site.id, self.owner, due, check)
            log.warning("site %s: %s says renew now (revoked?)", site.id, current.ca)
            if self._promote(site, current, "the CA asks for renewal now"):
                return self.inventory.sites.site(site.id) or site, False, None
            return (site if fresh else replace(site, renew_at=now)), True, next_check
        renew_at = self._renew_at(site.id, current.not_before, current.not_after, window)
        if renew_at == site.renew_at:
            self.inventory.sites.update_options_leased(site.id, self.owner, check)
        else:
            # Not over a "renew now" the API set while this worker held the site: its
            # release makes the site due again, and the next turn renews it.
            self.inventory.sites.replan_leased(site.id, self.owner, site.renew_at, renew_at, check)
        site = replace(site, renew_at=renew_at)
        return site, planner.is_due(now, site.renew_at), next_check

    async def _check_fresh(
        self, site: Site, current: CertVersion | None, edges: EdgeReport
    ) -> tuple[Site, int | None]:
        """`_check` of a certificate this turn stored: (site, its next check), which
        `_finish` writes with the release. A CA that asks for renewal at once sends it
        to `_check`, which writes at once (and may promote the backup)."""
        source = None if current is None else self._ari_source(current.ca)
        if current is None or source is None:
            return site, None
        now = self.now()
        try:
            window = await source.renewal_window(current.fullchain_pem)
        except Exception as exc:
            log.info("site %s: renewal information from %s: %s", site.id, current.ca, exc)
            window = None
        if window is not None and window.end <= now:
            self._record(site, edges)
            site, _, _ = await self._check(
                site, current, stored_check=None, window=window, fresh=True
            )
            return site, None
        renew_at = self._renew_at(site.id, current.not_before, current.not_after, window)
        return replace(site, renew_at=renew_at), self._next_check(now, window)

    def _record(self, site: Site, edges: EdgeReport) -> None:
        """Write the deployments of `edges` now rather than with the release."""
        if edges.outcomes:
            self.inventory.sites.record_deployments(site.id, edges.outcomes, self.now())

    def _next_check(self, now: int, window: RenewalWindow | None) -> int:
        interval = self.config.ari_interval
        if window is not None and window.retry_after is not None:
            asked = int(window.retry_after * planner.SECOND)
            interval = min(max(asked, planner.MINUTE), interval)
        return now + interval

    def _promote(self, site: Site, current: CertVersion | None, why: str) -> bool:
        """Make the site's backup its current certificate if the backup is usable."""
        now = self.now()
        backup = self.inventory.sites.backup(site.id)
        if current is None or backup is None or backup.ca == current.ca:
            return False
        if backup.not_after <= now or backup.not_before > now:
            return False
        version = backup.as_version(site.current_version + 1)
        renew_at = self._renew_at(site.id, backup.not_before, backup.not_after)
        if not self.inventory.sites.promote_backup(self.owner, version, renew_at):
            return False
        self.inventory.sites.update_options_leased(
            site.id, self.owner, OptionsChange(next_check=None)
        )
        log.warning("site %s: backup from %s made current (%s)", site.id, backup.ca, why)
        return True

    async def _keep_backup(self, site: Site, current: CertVersion | None) -> None:
        """Issue (or renew) the site's backup at a CA other than the current one's."""
        now, options = self.now(), self.inventory.sites.options(site.id)
        backup = self.inventory.sites.backup(site.id)
        if current is None or (options.backup_retry_at or 0) > now:
            return
        fresh = backup is not None and not planner.backup_due(
            now, backup.renew_at, backup.not_after
        )
        if fresh and backup is not None and backup.ca != current.ca:
            return
        key_pem = key_to_pem(new_key())
        request = OrderRequest(site, make_csr(key_from_pem(key_pem), site.names), None, None)
        issued, _ = await self._issue_at_some_ca(site, request, exclude=current.ca)
        if issued is None:
            retry = now + self.config.backup_retry
            self.inventory.sites.update_options_leased(
                site.id, self.owner, OptionsChange(backup_retry_at=retry)
            )
            return
        leaf = x509.load_pem_x509_certificates(issued.pem.encode())[0]
        nb, na = to_us(leaf.not_valid_before_utc), to_us(leaf.not_valid_after_utc)
        made = BackupCert(
            site.id, issued.ca, format(leaf.serial_number, "x"), nb, na,
            issued.pem, key_pem, self.now(), self._renew_at(site.id + "/backup", nb, na),
        )  # fmt: skip
        if self.inventory.sites.store_backup(self.owner, made):
            self.inventory.sites.update_options_leased(
                site.id, self.owner, OptionsChange(backup_retry_at=None)
            )
            log.info("site %s: backup from %s, serial %s", site.id, made.ca, made.serial)

    # issuance -----------------------------------------------------------------------

    async def _renew(self, site: Site, current: CertVersion | None) -> Outcome:
        key_pem = site.order_key_pem or key_to_pem(new_key())
        if not self.inventory.sites.update_leased(
            site.id, self.owner, SiteChange(order_key_pem=key_pem, state=SiteState.ISSUING)
        ):
            return Outcome(lost=True)
        request = OrderRequest(
            site=site,
            csr_der=make_csr(key_from_pem(key_pem), site.names),
            replaces=None if current is None else ari_cert_id(current.fullchain_pem),
            resume_url=site.order_url,
        )
        resume_ca = self.inventory.sites.options(site.id).order_ca if site.order_url else None
        issued, outcome = await self._issue_at_some_ca(
            site, request, resume_ca=resume_ca or self._only_ca(), current=current
        )
        if issued is None:
            return outcome
        return self._store(site, issued, key_pem)

    def _only_ca(self) -> str | None:
        """With one CA, an order in flight is at that CA whatever was recorded."""
        return self.pool.entries[0].name if len(self.pool.entries) == 1 else None

    async def _issue_at_some_ca(
        self,
        site: Site,
        request: OrderRequest,
        *,
        exclude: str | None = None,
        resume_ca: str | None = None,
        current: CertVersion | None = None,
    ) -> tuple[Issued | None, Outcome]:
        """Try the CAs that may take `site`, in order: (what was issued, Outcome())
        or (None, why not). The primary certificate's orders are recorded on the site
        (`exclude` None); a backup's are not."""
        now, domains = self.now(), registered_domains(site.names)
        exempt = None if current is None else current.ca
        plan: planner.CaPlan | None = None
        if resume_ca is not None and resume_ca == self._only_ca() and exclude is None:
            order = [resume_ca]  # the one CA goes first whatever the plan: not read
        else:
            plan = self.pool.plan(self.inventory, domains, now, exempt)
            order = [n for n in plan.order if n != exclude]
            if resume_ca is not None and self.pool.get(resume_ca) is not None:
                order = [resume_ca, *(n for n in order if n != resume_ca)]
        last: BaseException | None = None
        for name in order:
            entry = self.pool.get(name)
            assert entry is not None
            at_same = current is not None and current.ca == name
            attempt = replace(
                request,
                replaces=request.replaces if at_same else None,
                resume_url=request.resume_url if name == resume_ca else None,
            )
            if not self.pool.reserve(
                self.inventory, entry, site.id, domains, now, at_same or name == resume_ca
            ):
                continue
            try:
                pem = await self._issue_with(entry, attempt, record=exclude is None)
            except CaBusy as busy:
                # The CA is up, only busy: the site waits its turn there (see cas.py).
                return None, Outcome(wait_until=self.now() + planner.MINUTE, note=str(busy))
            except Exception as exc:
                last = exc
                if is_ca_fault(exc) or is_rate_limited(exc):
                    continue
                break
            return Issued(pem, name), Outcome()
        if last is not None:
            return None, Outcome(problem=problem_of(last))
        if plan is None:
            plan = self.pool.plan(self.inventory, domains, now, exempt)
        if plan.wait_until is not None or not order:
            note = NO_CA_REACHABLE if plan.unreachable else None
            return None, Outcome(wait_until=plan.wait_until or now + planner.MINUTE, note=note)
        return None, Outcome(wait_until=now + planner.MINUTE)  # lost every reservation race

    async def _issue_with(self, entry: CaEntry, request: OrderRequest, record: bool) -> str:
        """One order at `entry`'s CA, holding one of its slots; CaBusy if none came free."""
        try:
            async with self.ca_slots.hold(entry, request.site.id):
                return await self._attempt(entry, request, record)
        except CaBusy:
            self._settle(entry, request.site.id, issued=False)
            raise

    async def _attempt(self, entry: CaEntry, request: OrderRequest, record: bool) -> str:
        site, name = request.site, entry.name

        async def started(url: str) -> None:
            if record:
                self.inventory.sites.update_leased(site.id, self.owner, SiteChange(order_url=url))
                if self._multi:
                    self.inventory.sites.update_options_leased(
                        site.id, self.owner, OptionsChange(order_ca=name)
                    )

        began = time.perf_counter()
        try:
            pem = await entry.issuer.issue(request, started)
        except FleetCannotValidate as exc:
            # The fleet's own configuration fault: not an attempt at the CA (no order
            # was opened), so it is not counted in the CA's figures.
            self._settle(entry, site.id, issued=False)
            log.warning("site %s: not ordered: %s", site.id, exc)
            raise
        except Exception as exc:
            if not is_own_fault(exc):
                self._count(name, False, time.perf_counter() - began)
            self._settle(entry, site.id, issued=False)
            shown = _CHALLENGE_TOKEN.sub(r"\1...", str(exc))
            log.warning("site %s: issuance at %s failed: %s", site.id, name, shown)
            if isinstance(exc, AcmeError | OrderNotValid) and record:  # the order is done
                self.inventory.sites.update_leased(site.id, self.owner, SiteChange(order_url=None))
            if is_ca_fault(exc):
                self.pool.record_failure(self.inventory, entry, exc, self.now())
            raise
        self._count(name, True, time.perf_counter() - began)
        self._settle(entry, site.id, issued=True, succeeded=True)
        return pem

    def _count(self, ca: str, issued: bool, seconds: float) -> None:
        """An attempt in this process's metrics, and in the fleet-wide hourly figures at
        the next `flush_stats`."""
        self.metrics.issuance(ca, issued, seconds)
        add_attempt(self._stats, attempt_bucket(ca, self.now(), issued, seconds))

    def _settle(self, entry: CaEntry, site_id: str, issued: bool, succeeded: bool = False) -> None:
        """End the order's reservation (if one was made); with `succeeded`, the CA's run
        of failures too, in the same transaction."""
        if entry.spec.certificates_per_domain is not None:  # else nothing was reserved
            self.inventory.cas.settle(
                entry.name, site_id, self.now(), issued=issued, succeeded=succeeded
            )
        elif succeeded:
            self.inventory.cas.succeeded(entry.name)

    def _renew_at(
        self, seed: str, not_before: int, not_after: int, window: RenewalWindow | None = None
    ) -> int:
        jitter = planner.site_jitter(seed)
        ari = None if window is None else planner.AriWindow(window.start, window.end)
        return planner.renewal_time(
            not_before, not_after, jitter, ari=ari, policy=self.config.policy
        )

    def _store(self, site: Site, issued: Issued, key_pem: str) -> Outcome:
        leaf = x509.load_pem_x509_certificates(issued.pem.encode())[0]
        version = CertVersion(
            site_id=site.id,
            version=site.current_version + 1,
            serial=format(leaf.serial_number, "x"),
            not_before=to_us(leaf.not_valid_before_utc),
            not_after=to_us(leaf.not_valid_after_utc),
            fullchain_pem=issued.pem,
            key_pem=key_pem,
            issued=self.now(),
            ca=issued.ca,
        )
        renew_at = self._renew_at(site.id, version.not_before, version.not_after)
        options = None
        if self._multi or self._ari:  # no next check: handle() asks the CA at once
            options = OptionsChange(order_ca=None, next_check=None)
        if not self.inventory.sites.store_version(self.owner, version, renew_at, options):
            log.warning("site %s: version %d lost a race; discarded", site.id, version.version)
            return Outcome(lost=True)
        log.info(
            "site %s: issued version %d from %s, serial %s, for %s",
            site.id, version.version, issued.ca, version.serial, ", ".join(site.names),
        )  # fmt: skip
        # the site as store_version left it, without reading it again
        stored = replace(
            site, current_version=version.version, renew_at=renew_at, state=SiteState.ISSUING,
            failure_count=0, last_problem=None, order_url=None, order_key_pem=None,
        )  # fmt: skip
        return Outcome(site=stored, current=version)

    # edges ----------------------------------------------------------------------------

    async def _deploy(
        self, site: Site, current: CertVersion | None, fresh: bool = False
    ) -> EdgeReport:
        """Put the current version on every edge lacking it. A `fresh` version (just
        stored by this worker) is on none yet: what the edges have is read only if one
        of them fails (for its count of failures)."""
        if current is None:
            return EdgeReport(0, len(self.deployers))
        if fresh:
            todo = list(self.deployers)
        else:
            have = self.inventory.sites.deployments(site.id)
            todo = [
                d
                for d in self.deployers
                if d.name not in have or have[d.name].version != current.version
            ]
        results = await asyncio.gather(
            *(
                d.deploy(site, current.fullchain_pem.encode(), current.key_pem.encode())
                for d in todo
            ),
            return_exceptions=True,
        )
        worst, outcomes = 0, []
        for deployer, result in zip(todo, results, strict=True):
            error = None if not isinstance(result, BaseException) else str(result)
            outcomes.append((deployer.name, current.version, error))
            if error is None:
                log.info("site %s: version %d deployed to edge %s",
                         site.id, current.version, deployer.name)  # fmt: skip
            else:
                if fresh:
                    have, fresh = self.inventory.sites.deployments(site.id), False
                self.metrics.deploy_failed[deployer.name] += 1
                log.warning("site %s: edge %s: %s", site.id, deployer.name, error)
                worst = max(
                    worst, have[deployer.name].failure_count + 1 if deployer.name in have else 1
                )
        missing = sum(1 for _, _, error in outcomes if error is not None)
        return EdgeReport(worst, missing, tuple(outcomes))

    async def _remove_from_edges(self, site: Site) -> Sequence[object]:
        """Each edge's removal of `site` (None or the exception raised), unless a site
        not removed has its first name now."""
        successor = self.inventory.sites.site_by_name(site.name)
        if successor is not None:
            log.info("site %s: its directory is site %s's now", site.id, successor.id)
            return [None] * len(self.deployers)
        return await asyncio.gather(
            *(d.remove(site) for d in self.deployers), return_exceptions=True
        )

    async def _remove(self, site: Site) -> None:
        # A removed site's names are free at once: a site added since with the same first
        # name owns the edges' directory now, and deploying it replaces these files.
        results = await self._remove_from_edges(site)
        outcomes = [
            (d.name, 0, None if not isinstance(r, BaseException) else str(r))
            for d, r in zip(self.deployers, results, strict=True)
        ]
        self.inventory.sites.record_deployments(site.id, outcomes, self.now())
        failed = sum(error is not None for _, _, error in outcomes)
        now = self.now()
        if failed:
            retry = now + planner.retry_delay(site.failure_count + 1, now)
            self.inventory.sites.defer(site.id, self.owner, retry, site.failure_count + 1)
            return
        self.inventory.sites.mark_removed(site.id, self.owner)
        log.info("site %s removed from %d edges", site.id, len(self.deployers))

    # planning -------------------------------------------------------------------------

    def _finish(
        self,
        site: Site,
        current: CertVersion | None,
        outcome: Outcome,
        edges: EdgeReport,
        checked: int | None = None,
    ) -> tuple[Alert | None, bool]:
        """Record the outcome and release the lease, in one statement: the alert to
        raise if the site has just entered the failing state, and whether this worker
        still held the site. `checked` is the next renewal-information check if this
        turn stored it."""
        now, policy = self.now(), self.config.policy
        not_after = None if current is None else current.not_after
        failure, count = outcome.problem, site.failure_count
        if failure is not None:
            count += 1
            change = SiteChange(
                failure_count=count,
                last_problem=failure,
                state=settled_state(count, current is not None, edges, policy),
            )
            when = planner.next_action_at(now, site.renew_at, count, not_after, policy)
        elif outcome.wait_until is not None:
            change = self._deferred(site, current is not None, edges, outcome.note)
            when = outcome.wait_until
        else:
            state = settled_state(site.failure_count, current is not None, edges, policy)
            change = SiteChange(state=state) if state != site.state else SiteChange()
            when = planner.next_action_at(now, site.renew_at, 0, not_after, policy)
        if edges.worst:
            when = min(when, now + planner.retry_delay(edges.worst, now, not_after, policy))
        when = min([when, *self._other_times(site, checked)])
        options = None
        if checked is not None:  # the answer of _check_fresh, with the renewal time
            change = replace(change, renew_at=site.renew_at)
            options = OptionsChange(next_check=checked)
        recorded = self.inventory.sites.release(
            site.id, self.owner, when, now, change, options, edges.outcomes
        )
        if failure is not None and recorded and count == policy.failing_after:
            return Alert(site.id, site.names, count, failure), recorded
        return None, recorded

    async def _lost(self, site: Site, deployed: CertVersion | None) -> None:
        """The lease ended while this turn went on (an edge slower than the lease), and
        another worker may have removed the site from the edges meanwhile: what this
        turn deployed then must go too, or the removed site's key stays on the edges
        for ever. Removing again is harmless; a site added since under the same name
        keeps its files (`_remove_from_edges`). Or it may have deployed a newer version
        (renew now: a key to replace), which this turn's `deployed` overwrote: every
        edge gets the current version again, from the next turn, due at once."""
        now = self.inventory.sites.site(site.id)
        if now is None:
            return
        if now.desired != DesiredState.REMOVED:
            if deployed is not None and deployed.version != now.current_version:
                log.warning(
                    "site %s: version %d deployed late; redeployed", site.id, deployed.version
                )
                self.inventory.sites.redeploy(site.id, self.now())
            return
        log.warning("site %s: removed while this worker deployed it; removed again", site.id)
        results = await self._remove_from_edges(now)
        for deployer, result in zip(self.deployers, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("site %s: edge %s: %s", site.id, deployer.name, result)

    def _deferred(
        self, site: Site, has_certificate: bool, edges: EdgeReport, why: str | None
    ) -> SiteChange:
        """No CA may take the site now (none reachable, or none with room or a free
        slot): it waits, and that is no failure; nor does it end one, so a site that
        was failing still shows as failing."""
        detail = why or "waiting for room under the CAs' limits"
        note = {"type": "about:blank", "detail": detail}
        state = settled_state(site.failure_count, has_certificate, edges, self.config.policy)
        return SiteChange(last_problem=note, state=state)

    def _other_times(self, site: Site, checked: int | None = None) -> list[int]:
        """When the next ARI check and the backup's renewal (or retry) are due;
        `checked`, the next check if this turn is to store it (the stored one is
        older)."""
        if not self._multi and not self._ari:
            return []
        times = [] if checked is None else [checked]
        if checked is not None and not self._multi:
            return times
        options = self.inventory.sites.options(site.id)
        if checked is None and options.next_check is not None:
            times.append(options.next_check)
        if options.backup and self._multi:
            backup = self.inventory.sites.backup(site.id)
            if options.backup_retry_at is not None:
                times.append(options.backup_retry_at)
            elif backup is not None:
                times.append(min(backup.renew_at, backup.not_after))
        return times
