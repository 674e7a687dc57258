"""The worker: lease due sites, issue or renew, store the version, deploy, plan.

One pass (`run_once`) leases up to `batch` due sites and handles them concurrently:

1. A site whose desired state is removed is taken off every edge, then marked removed.
2. A site without a certificate, or past its renewal time, gets a new one. The new key
   is stored before the order is opened and the order URL as soon as it exists, so a
   worker that takes over an expired lease resumes that order (see acme.py). Renewals
   name the certificate they replace (RFC 9773 `replaces`), and the new version is
   stored by a compare-and-set on the site's current version, so one renewal yields
   exactly one current certificate however many workers race.
3. Every edge that lacks the current version gets it; a failing edge is recorded and
   retried with back-off while the others proceed.
4. The lease is released with the planner's next action time.

Any failure is recorded on the site (`failure_count`, `last_problem`) and retried
after the planner's back-off; nothing a site does can stop the loop. Time comes from
the injected Clock only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from acmekit.client.certmanager import make_csr
from acmekit.client.clock import Clock
from acmekit.fleet import planner
from acmekit.fleet.acme import ari_cert_id, key_from_pem, key_to_pem, new_key
from acmekit.fleet.deploy import Deployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import Issuer, OrderRequest
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import CertVersion, DesiredState, Site, SiteState, to_us
from acmekit.protocol.problems import AcmeError

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerConfig:
    owner: str = field(default_factory=worker_id)
    lease: int = 15 * planner.MINUTE  # longer than one issuance may take
    batch: int = 50
    concurrency: int = 20
    idle_sleep: float = 2.0  # seconds between passes that found nothing due
    policy: planner.Policy = planner.DEFAULT_POLICY


def problem_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AcmeError):
        return exc.problem.to_json()
    return {"type": "about:blank", "detail": f"{type(exc).__name__}: {exc}"}


class Worker:
    def __init__(
        self,
        inventory: Inventory,
        issuer: Issuer,
        deployers: Sequence[Deployer],
        clock: Clock,
        config: WorkerConfig | None = None,
        metrics: FleetMetrics | None = None,
    ) -> None:
        self.inventory = inventory
        self.issuer = issuer
        self.deployers = tuple(deployers)
        self.clock = clock
        self.config = config or WorkerConfig()
        self.metrics = metrics or FleetMetrics()
        self._slots = asyncio.Semaphore(self.config.concurrency)

    @property
    def owner(self) -> str:
        return self.config.owner

    def now(self) -> int:
        return to_us(self.clock.now())

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until `stop` is set."""
        while not stop.is_set():
            if await self.run_once() == 0:
                await self.clock.sleep(self.config.idle_sleep)

    async def run_once(self) -> int:
        """Lease one batch of due sites and handle them; how many there were."""
        leased = self.inventory.lease_due(
            self.owner, self.now(), self.config.lease, self.config.batch
        )
        await asyncio.gather(*(self._guarded(s) for s in leased))
        return len(leased)

    async def _guarded(self, site: Site) -> None:
        async with self._slots:
            try:
                await self.handle(site)
            except Exception:
                log.exception("site %s: unexpected failure", site.id)
                self.inventory.release(site.id, self.owner, self.now() + planner.MINUTE, self.now())

    async def handle(self, site: Site) -> None:
        if site.desired == DesiredState.REMOVED:
            await self._remove(site)
            return
        failure: dict[str, Any] | None = None
        if planner.is_due(self.now(), site.renew_at):
            renewed, failure = await self._renew(site)
            if renewed is None and failure is None:
                return  # the lease was lost: another worker has the site
            site = renewed or site
        edge_failures = await self._deploy(site)
        self._finish(site, failure, edge_failures)

    # issuance -----------------------------------------------------------------------

    async def _renew(self, site: Site) -> tuple[Site | None, dict[str, Any] | None]:
        """(the site with its new version, None), (None, problem), or (None, None) when
        the lease was lost."""
        key_pem = self.inventory.order_key(site.id) or key_to_pem(new_key())
        if not self.inventory.update_leased(
            site.id, self.owner, order_key_pem=key_pem, state=SiteState.ISSUING
        ):
            return None, None
        current = self.inventory.current(site)
        request = OrderRequest(
            site=site,
            csr_der=make_csr(key_from_pem(key_pem), site.names),
            replaces=None if current is None else ari_cert_id(current.fullchain_pem),
            resume_url=site.order_url,
        )

        async def started(url: str) -> None:
            self.inventory.update_leased(site.id, self.owner, order_url=url)

        began = time.perf_counter()
        try:
            pem = await self.issuer.issue(request, started)
        except Exception as exc:
            self.metrics.issuance(self.issuer.name, False, time.perf_counter() - began)
            log.warning("site %s: issuance failed: %s", site.id, exc)
            if isinstance(exc, AcmeError):
                self.inventory.update_leased(site.id, self.owner, order_url=None)
            return None, problem_of(exc)
        self.metrics.issuance(self.issuer.name, True, time.perf_counter() - began)
        return self._store(site, pem, key_pem)

    def _store(
        self, site: Site, pem: str, key_pem: str
    ) -> tuple[Site | None, dict[str, Any] | None]:
        leaf = x509.load_pem_x509_certificates(pem.encode())[0]
        version = CertVersion(
            site_id=site.id,
            version=site.current_version + 1,
            serial=format(leaf.serial_number, "x"),
            not_before=to_us(leaf.not_valid_before_utc),
            not_after=to_us(leaf.not_valid_after_utc),
            fullchain_pem=pem,
            key_pem=key_pem,
            issued=self.now(),
            ca=self.issuer.name,
        )
        jitter = planner.site_jitter(site.id)
        renew_at = planner.renewal_time(
            version.not_before, version.not_after, jitter, policy=self.config.policy
        )
        if not self.inventory.store_version(self.owner, version, renew_at):
            log.warning("site %s: version %d lost a race; discarded", site.id, version.version)
            return None, None
        log.info("site %s: version %d, serial %s", site.id, version.version, version.serial)
        return self.inventory.site(site.id), None

    # edges ----------------------------------------------------------------------------

    async def _deploy(self, site: Site) -> int:
        """Put the current version on every edge lacking it; the worst edge's failure
        count (0 when every edge has it)."""
        current = self.inventory.current(site)
        if current is None:
            return 0
        have = self.inventory.deployments(site.id)
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
        worst = 0
        for deployer, result in zip(todo, results, strict=True):
            error = None if not isinstance(result, BaseException) else str(result)
            self.inventory.record_deployment(
                site.id, deployer.name, current.version, self.now(), error
            )
            if error is not None:
                self.metrics.deploy_failed[deployer.name] += 1
                log.warning("site %s: edge %s: %s", site.id, deployer.name, error)
                worst = max(
                    worst, have[deployer.name].failure_count + 1 if deployer.name in have else 1
                )
        return worst

    async def _remove(self, site: Site) -> None:
        results = await asyncio.gather(
            *(d.remove(site) for d in self.deployers), return_exceptions=True
        )
        failed = 0
        for deployer, result in zip(self.deployers, results, strict=True):
            error = None if not isinstance(result, BaseException) else str(result)
            self.inventory.record_deployment(site.id, deployer.name, 0, self.now(), error)
            failed += error is not None
        now = self.now()
        if failed:
            retry = now + planner.retry_delay(site.failure_count + 1, now)
            self.inventory.update_leased(
                site.id,
                self.owner,
                failure_count=site.failure_count + 1,
                lease_owner=None,
                lease_until=None,
                next_action_at=retry,
            )
            return
        self.inventory.update_leased(
            site.id,
            self.owner,
            state=SiteState.REMOVED,
            lease_owner=None,
            lease_until=None,
            next_action_at=None,
            order_url=None,
            order_key_pem=None,
        )
        log.info("site %s removed from %d edges", site.id, len(self.deployers))

    # planning -------------------------------------------------------------------------

    def _finish(self, site: Site, failure: dict[str, Any] | None, edge_failures: int) -> None:
        now, policy = self.now(), self.config.policy
        current = self.inventory.current(site)
        not_after = None if current is None else current.not_after
        if failure is not None:
            count = site.failure_count + 1
            self.inventory.update_leased(
                site.id,
                self.owner,
                failure_count=count,
                last_problem=json.dumps(failure),
                state=planner.state_after_failure(count, current is not None, policy),
            )
            when = planner.next_action_at(now, site.renew_at, count, not_after, policy)
        else:
            when = planner.next_action_at(now, site.renew_at, 0, not_after, policy)
        if edge_failures:
            when = min(when, now + planner.retry_delay(edge_failures, now, not_after, policy))
        self.inventory.release(site.id, self.owner, when, now)
