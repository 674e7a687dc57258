"""Two `acmekit fleet worker` processes on one PostgreSQL inventory, against `acmekit
server` as a process; one is SIGKILLed while it holds sites with orders in flight.

The other worker takes the dead one's sites once their leases expire
(`--lease-seconds`), resumes the orders recorded on them, and finishes: every site ends
active with exactly one current certificate (version 1, on the edge), and the CA
issued exactly one certificate per site, so nothing was ordered twice.
"""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, Site, SiteState, to_us
from acmekit_testkit.fleet_workers import WorkerProcess, fleet_worker_process, worker_peers
from acmekit_testkit.processes import wait_until

pytestmark = pytest.mark.postgres

SITES = 40
WORKER_ARGS = ["--batch", "6", "--concurrency", "3", "--lease-seconds", "20"]
# Each signature held back this long, so that an order seen in flight is still in flight
# when the worker is killed a moment later; on a fast machine the orders seen had all
# finished in between.
ISSUANCE_DELAY = 0.5


def _in_flight(inventory: Inventory, worker: WorkerProcess) -> list[Site]:
    """Sites `worker` holds with an order open at the CA."""
    return [
        s
        for s in inventory.sites.page(limit=SITES)
        if s.lease_owner == worker.owner and s.order_url is not None
    ]


def _ca_certificates(state_dir: Path) -> list[x509.Certificate]:
    """Every certificate the CA signed, from its own database."""
    engine = sa.create_engine(f"sqlite:///{state_dir / 'acmekit.db'}")
    with engine.connect() as conn:
        pems = conn.execute(sa.text("SELECT pem FROM certificates WHERE pem IS NOT NULL"))
        found = [x509.load_pem_x509_certificates(p.encode())[0] for (p,) in pems]
    engine.dispose()
    return found


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return tuple(sorted(san.get_values_for_type(x509.DNSName)))


def test_a_killed_worker_leaves_every_site_with_one_certificate(tmp_path: Path) -> None:
    edge = tmp_path / "edge"
    names = [(f"s{i}.kill{i}.test", f"www.s{i}.kill{i}.test") for i in range(SITES)]
    with worker_peers(tmp_path, {"issuance_delay": ISSUANCE_DELAY}) as (db, ca):
        inventory = Inventory.from_url(db)
        ids = inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, to_us(datetime.now(UTC)))

        def worker() -> AbstractContextManager[WorkerProcess]:
            return fleet_worker_process(
                tmp_path, db=db, server=ca, edges=[str(edge)], args=WORKER_ARGS
            )

        with worker() as doomed, worker() as survivor:
            logs = [doomed.log, survivor.log]
            counts = inventory.sites.counts_by_state

            def mid_issuance() -> bool:
                active = counts()[SiteState.ACTIVE]
                return 0 < active < SITES - 10 and bool(_in_flight(inventory, doomed))

            wait_until("orders in flight at the first worker", mid_issuance, 120, logs)
            doomed.kill()
            orphaned = _in_flight(inventory, doomed)
            assert orphaned and counts()[SiteState.ACTIVE] < SITES
            wait_until("every site active", lambda: counts()[SiteState.ACTIVE] == SITES, 180, logs)

        sites = {s.id: s for s in inventory.sites.page(limit=SITES)}
        assert sorted(sites) == sorted(ids)
        serials: dict[tuple[str, ...], int] = {}
        for site in sites.values():
            versions = inventory.sites.versions(site.id)
            assert site.state == SiteState.ACTIVE and site.current_version == 1
            assert [v.version for v in versions] == [1]
            assert site.lease_owner is None and site.order_url is None
            on_edge = (edge / site.name / "fullchain.pem").read_bytes()
            assert format(x509.load_pem_x509_certificates(on_edge)[0].serial_number, "x") == (
                versions[0].serial
            )
            serials[tuple(sorted(site.names))] = int(versions[0].serial, 16)
        for site in orphaned:  # the dead worker's sites were finished by the other
            assert sites[site.id].current_version == 1
        issued = _ca_certificates(ca.state_dir)
        per_site = Counter(_names(cert) for cert in issued)
        assert per_site == Counter(dict.fromkeys(serials, 1))
        assert {_names(c): c.serial_number for c in issued} == serials
        inventory.close()
