"""A customer's wildcard site issued and renewed by the fleet from one standing
dns-persist-01 record (draft-ietf-acme-dns-persist-02), with no DNS API configured at all:
the fleet only reads the customer's `_validation-persist` name through its resolver.

Two CAs side by side: each has its own record at the same name (§4.3), and each CA ignores
the other's. Before the record stands, the fleet does not order: the site's problem names
the exact record to publish, which the API shows too.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from acmekit.cli.fleet import fleet as fleet_cli
from acmekit.client.solvers.accountbound import DnsPersistSolver
from acmekit.fleet.acme import DbHttpSolver
from acmekit.fleet.api import site_json
from acmekit.fleet.cas import CaPool, CaSpec, RegisteringIssuer
from acmekit.fleet.delegation import AcmekitDnsProvider
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState
from acmekit.fleet.persist import site_records
from acmekit.fleet.status import collect, render
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.fleet_cas import TwoCaFleet, directory, two_ca_fleet

CAS = {
    "ca-one": {"dns_persist_01": True, "caa_identities": ("one.ca.test",)},
    "ca-two": {"dns_persist_01": True, "caa_identities": ("two.ca.test",)},
}


class Later:
    """The real clock, a day on: what a worker sees when a deferred site is due again."""

    def __init__(self, days: float) -> None:
        self.offset = timedelta(days=days)

    def now(self) -> datetime:
        return datetime.now().astimezone() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
async def fleet(tmp_path: Path, dns_server: DnsServerHandle) -> AsyncIterator[TwoCaFleet]:
    async with two_ca_fleet(tmp_path, dns_server.dns_port, CAS) as f:
        yield f


async def _pool(fleet: TwoCaFleet, dns_server: DnsServerHandle) -> CaPool:
    # No dns-01 solver, no DNS provider: only the customer's record is read.
    solvers = {
        ChallengeType.HTTP_01: DbHttpSolver(fleet.inventory, fleet.now),
        ChallengeType.DNS_PERSIST_01: DnsPersistSolver(resolver=("127.0.0.1", dns_server.dns_port)),
    }
    return await fleet.pool([CaSpec(n, directory(n)) for n in CAS], solvers)


def _sans(pem: str) -> list[str]:
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


async def test_wildcard_site_from_one_standing_record(
    fleet: TwoCaFleet, dns_server: DnsServerHandle
) -> None:
    pool = await _pool(fleet, dns_server)
    names = ("*.customer.persist.test", "customer.persist.test")
    site = fleet.inventory.sites.add_site(names, ChallengeMethod.DNS_PERSIST_01, fleet.now())
    assert site.method == ChallengeMethod.DNS_PERSIST_01  # a wildcard keeps the method

    # No record yet: no order; the problem says what to publish.
    assert await fleet.worker(pool).run_once() == 1
    waiting = fleet.inventory.sites.site(site.id)
    assert waiting is not None and waiting.current_version == 0
    assert waiting.last_problem is not None
    detail = str(waiting.last_problem["detail"])
    assert "_validation-persist.customer.persist.test" in detail and "publish" in detail

    # Each CA's record, as the API shows it once the fleet has its accounts.
    for entry in pool.entries:
        assert isinstance(entry.issuer, RegisteringIssuer)
        await entry.issuer.ensure_account()
    shown = site_json(fleet.inventory, site)["persist_records"]
    assert [r["ca"] for r in shown] == ["ca-one", "ca-two"]
    assert {r["name"] for r in shown} == {"_validation-persist.customer.persist.test."}
    assert all(r["value"].endswith("; policy=wildcard") for r in shown)
    assert shown == site_records(fleet.inventory, site)
    # The status page shows them too, while the site waits for them.
    page = render(collect(fleet.inventory, FleetMetrics(), fleet.now()))
    assert 'id="to-publish"' in page
    for record in shown:
        assert html.escape(record["value"]) in page and record["name"] in page
    for record in shown:  # what the customer does, once
        await dns_server.set_txt(record["name"], record["value"])

    later = Later(days=1)
    assert await fleet.worker(pool, clock=later).run_once() == 1
    done = fleet.inventory.sites.site(site.id)
    assert done is not None and done.state == SiteState.ACTIVE, done
    [first] = fleet.inventory.sites.versions(site.id)
    assert _sans(first.fullchain_pem) == sorted(names)
    assert 'id="to-publish"' not in render(collect(fleet.inventory, FleetMetrics(), fleet.now()))

    # A renewal: the same standing record, nothing changed in DNS.
    assert fleet.inventory.sites.force_renewal(site.id, fleet.now())
    assert await fleet.worker(pool, clock=later).run_once() == 1
    versions = fleet.inventory.sites.versions(site.id)
    assert [v.version for v in versions] == [1, 2]
    assert _sans(versions[-1].fullchain_pem) == sorted(names)
    # `acmekit fleet add` prints them too, for a site added now.
    added = CliRunner().invoke(
        fleet_cli,
        ["add", "--db", f"sqlite:///{fleet.tmp_path / 'fleet.db'}",
         "--method", "dns-persist-01", "*.other.persist.test"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.output.count("_validation-persist.other.persist.test. IN TXT ") == 2


async def test_http_and_dns01_sites_show_no_persist_records(
    fleet: TwoCaFleet, dns_server: DnsServerHandle
) -> None:
    site = fleet.inventory.sites.add_site(("plain.persist.test",), ChallengeMethod.HTTP_01, 0)
    assert site_json(fleet.inventory, site)["persist_records"] is None


async def test_a_cname_loop_at_the_customers_name_is_a_dns_problem(
    fleet: TwoCaFleet, dns_server: DnsServerHandle
) -> None:
    provider = AcmekitDnsProvider(dns_server.api_url)  # the customer's DNS, not the fleet's
    await provider.set_cname("_validation-persist.loop.persist.test.", "a.loop.persist.test.")
    await provider.set_cname("a.loop.persist.test.", "_validation-persist.loop.persist.test.")
    pool = await _pool(fleet, dns_server)
    site = fleet.inventory.sites.add_site(
        ("loop.persist.test",), ChallengeMethod.DNS_PERSIST_01, fleet.now()
    )
    assert await fleet.worker(pool).run_once() == 1
    failed = fleet.inventory.sites.site(site.id)
    assert failed is not None and failed.current_version == 0
    assert failed.last_problem is not None
    assert failed.last_problem["type"] == "urn:ietf:params:acme:error:dns"
    assert "CNAME loop" in str(failed.last_problem["detail"])
