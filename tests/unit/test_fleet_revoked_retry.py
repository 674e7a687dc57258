"""A certificate its CA asks to renew now (an ARI window already past: revoked) stays
due until a renewal succeeds: a failed renewal is retried after the failure back-off
(a minute), not put off until the next renewal-information check (hours).

The issuer is the local test CA (testkit/acmekit_testkit/fleet_testca.py) with renewal
information; the edge keeps files in memory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import RenewalWindow
from acmekit.fleet.model import ChallengeMethod, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class RevokingIssuer(LocalIssuer):
    """The local CA; once `revoked` is set, every certificate issued before
    `revoked_at` gets a window that has ended (renew now)."""

    revoked_at: datetime | None = None

    async def renewal_window(self, fullchain_pem: str) -> RenewalWindow | None:
        leaf = x509.load_pem_x509_certificates(fullchain_pem.encode())[0]
        if self.revoked_at is None or leaf.not_valid_before_utc >= self.revoked_at:
            return None
        past = to_us(self.now() - timedelta(days=1))
        return RenewalWindow(past - 1, past, None)


async def test_a_revoked_certificate_is_retried_after_the_back_off(tmp_path: Path) -> None:
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    issuer = RevokingIssuer(now=clock.now)
    edge = MemoryEdge("edge")
    (site_id,) = inventory.sites.add_sites([("a.revoked.test",)], ChallengeMethod.HTTP_01, 0)
    worker = Worker(inventory, issuer, [edge], clock, WorkerConfig(owner="w"))
    assert await worker.run_once() == 1
    assert len(issuer.issued) == 1

    clock.advance(timedelta(days=1))
    issuer.revoked_at = clock.now()
    issuer.down = True  # the renewal asked for fails once
    clock.advance(timedelta(hours=7))  # the next renewal-information check is due
    assert await worker.run_once() == 1
    site = inventory.sites.site(site_id)
    assert site is not None and site.failure_count == 1

    issuer.down = False
    clock.advance(timedelta(minutes=2))  # past the first back-off (one minute)
    await worker.run_once()
    assert len(issuer.issued) == 2  # renewed, not left revoked for hours
    site = inventory.sites.site(site_id)
    assert site is not None and site.current_version == 2 and site.failure_count == 0
    inventory.close()
