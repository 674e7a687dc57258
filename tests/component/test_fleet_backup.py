"""A backup certificate from a second CA, kept ready and swapped in on revocation.

Two of our CAs in-process. A site with `backup` set gets its certificate from the first
CA and a backup, with another key, from the second. The first CA's certificate is then
revoked; at its next check the worker sees the CA's renewal window pulled into the
past (RFC 9773; our CA does that for revoked certificates) and makes the backup current
and deploys it, with no new order for it, then keeps a fresh backup from the first CA.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from acmekit.clock import SystemClock
from acmekit.fleet.cas import CaSpec, RegisteringIssuer
from acmekit.fleet.model import ChallengeMethod, SiteState
from acmekit.fleet.repos.sites import OptionsChange
from acmekit.fleet.worker import WorkerConfig
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.fleet_cas import TwoCaFleet, directory, two_ca_fleet


class Later(SystemClock):
    """Real time, seen from just after the next renewal-information check is due."""

    def now(self) -> datetime:
        return super().now() + timedelta(microseconds=WorkerConfig().ari_interval + 1)


@pytest.fixture
async def fleet(tmp_path: Path, dns_server: DnsServerHandle) -> AsyncIterator[TwoCaFleet]:
    async with two_ca_fleet(tmp_path, dns_server.dns_port, {"ca-one": {}, "ca-two": {}}) as f:
        yield f


def _leaf(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem.encode())[0]


async def test_the_backup_goes_live_when_the_current_certificate_is_revoked(
    fleet: TwoCaFleet, tmp_path: Path
) -> None:
    specs = [CaSpec("ca-one", directory("ca-one")), CaSpec("ca-two", directory("ca-two"))]
    pool = await fleet.pool(specs)
    site = fleet.inventory.sites.add_site(
        ("shop.backup.test",), ChallengeMethod.HTTP_01, fleet.now()
    )
    fleet.inventory.sites.set_options(site.id, OptionsChange(backup=True))
    assert await fleet.worker(pool).run_once() == 1

    [first] = fleet.inventory.sites.versions(site.id)
    backup = fleet.inventory.sites.backup(site.id)
    assert first.ca == "ca-one" and backup is not None and backup.ca == "ca-two"
    assert backup.key_pem != first.key_pem and backup.serial != first.serial
    assert (
        _leaf(backup.fullchain_pem).public_key()
        == load_pem_private_key(backup.key_pem.encode(), None).public_key()
    )
    served = tmp_path / "edge" / "shop.backup.test" / "fullchain.pem"
    assert served.read_text() == first.fullchain_pem
    assert await fleet.worker(pool).run_once() == 0  # nothing due yet

    entry = pool.get("ca-one")
    assert entry is not None and isinstance(entry.issuer, RegisteringIssuer)
    await entry.issuer.inner.client.revoke(_leaf(first.fullchain_pem).public_bytes(Encoding.DER))

    later = fleet.worker(pool, clock=Later())
    assert await later.run_once() == 1
    now = fleet.inventory.sites.site(site.id)
    assert now is not None and now.state == SiteState.ACTIVE and now.current_version == 2
    second = fleet.inventory.sites.versions(site.id)[1]
    assert (second.ca, second.serial, second.key_pem) == (backup.ca, backup.serial, backup.key_pem)
    assert served.read_text() == backup.fullchain_pem
    served_key = tmp_path / "edge" / "shop.backup.test" / "privkey.pem"
    assert served_key.read_text() == backup.key_pem
    # The live certificate came from no new order: the only issuance in that pass was
    # the next backup, from the first CA again, with a key of its own.
    assert later.metrics.issued == {"ca-one": 1}
    fresh = fleet.inventory.sites.backup(site.id)
    assert fresh is not None and fresh.ca == "ca-one" and fresh.serial != first.serial
    assert fresh.key_pem not in (first.key_pem, backup.key_pem)
