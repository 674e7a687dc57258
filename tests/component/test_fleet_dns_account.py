"""dns-account-01 in the fleet (draft-ietf-acme-dns-account-label-03): two fleets, each
with its own account at our CA (a CDN and another CDN), validate the same wildcard site
at the same time through one delegation zone served by `acmekit dns`.

Each account's `_<label>._acme-challenge.NAME` is a CNAME of its own into the zone, so
each fleet publishes and clears TXT at names the other never touches: both are issued,
neither clobbers the other (with dns-01 both would share `_acme-challenge.NAME`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from acmekit.cli.fleet import fleet as fleet_cli
from acmekit.client.solvers.accountbound import DnsAccountSolver
from acmekit.fleet.api import site_json
from acmekit.fleet.capability import refusal
from acmekit.fleet.cas import CaPool, CaSpec, RegisteringIssuer
from acmekit.fleet.delegation import (
    AcmekitDnsProvider,
    account_delegation_target,
    delegation_target,
)
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState
from acmekit.fleet.service import FleetConfig, solvers_for
from acmekit.fleet.status import collect, render
from acmekit.protocol import dnsaccount
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.fleet_cas import TwoCaFleet, directory, two_ca_fleet

CA = {"ca": {"dns_account_01": True}}
ZONE = "deleg.acct.test"


class Watched(AcmekitDnsProvider):
    """The real API client, noting each name it writes; the first TXT it publishes waits
    until the other fleet has published too, so that both sets stand at once."""

    def __init__(self, api_url: str, mine: asyncio.Event, theirs: asyncio.Event) -> None:
        super().__init__(api_url)
        self.mine, self.theirs = mine, theirs
        self.written: set[str] = set()

    async def add_txt(self, fqdn: str, value: str) -> None:
        await super().add_txt(fqdn, value)
        self.written.add(fqdn)
        self.mine.set()
        await asyncio.wait_for(self.theirs.wait(), 60)

    async def remove_txt(self, fqdn: str, value: str) -> None:
        self.written.add(fqdn)
        await super().remove_txt(fqdn, value)


@pytest.fixture
async def fleets(
    tmp_path: Path, dns_server: DnsServerHandle
) -> AsyncIterator[tuple[TwoCaFleet, TwoCaFleet]]:
    async with two_ca_fleet(tmp_path, dns_server.dns_port, CA) as one:
        (tmp_path / "two").mkdir()
        two = TwoCaFleet(tmp_path / "two", one.cas)
        try:
            yield one, two
        finally:
            await two.stack.aclose()
            two.inventory.close()


async def _pool(fleet: TwoCaFleet, dns: DnsServerHandle, provider: Watched) -> CaPool:
    config = FleetConfig(
        db="unused",
        cas=[CaSpec("ca", directory("ca"))],
        dns_api=dns.api_url,
        dns_resolver=("127.0.0.1", dns.dns_port),
        delegation_zone=ZONE,
    )
    solvers = solvers_for(fleet.inventory, config, fleet.clock)
    solver = solvers[ChallengeType.DNS_ACCOUNT_01]
    assert isinstance(solver, DnsAccountSolver) and solver.follow_cname
    solver.provider = provider
    solver.propagation_interval = 0.2
    return await fleet.pool(list(config.cas), solvers)


def _sans(pem: str) -> list[str]:
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


async def test_two_fleets_validate_one_name_through_one_zone(
    fleets: tuple[TwoCaFleet, TwoCaFleet], dns_server: DnsServerHandle
) -> None:
    base = f"shop{int(time.time() * 1000) % 10**8}.acct.test"
    names = (f"*.{base}", base)
    one_ready, two_ready = asyncio.Event(), asyncio.Event()
    providers = [
        Watched(dns_server.api_url, one_ready, two_ready),
        Watched(dns_server.api_url, two_ready, one_ready),
    ]
    pools, sites, records = [], [], []
    for fleet, provider in zip(fleets, providers, strict=True):
        pool = await _pool(fleet, dns_server, provider)
        site = fleet.inventory.sites.add_site(names, ChallengeMethod.DNS_ACCOUNT_01, fleet.now())
        (entry,) = pool.entries
        assert isinstance(entry.issuer, RegisteringIssuer)
        await entry.issuer.ensure_account()
        # The API shows the customer the CNAME this account needs (one per name).
        shown = site_json(fleet.inventory, site, ZONE)["delegation"]
        url = fleet.inventory.cas.account_url("ca")
        assert url is not None
        record = dnsaccount.record_name(base, url) + "."
        assert list(shown) == [record]
        assert shown[record].endswith(delegation_target(base, ZONE))
        for owner, target in shown.items():  # what the customer does, once per account
            await AcmekitDnsProvider(dns_server.api_url).set_cname(owner, target)
        # The status page lists the CNAME while the site waits for its certificate.
        page = render(collect(fleet.inventory, FleetMetrics(), fleet.now(), zone=ZONE))
        assert f"{record}</td><td>CNAME</td><td><code>{shown[record]}</code>" in page
        pools.append(pool)
        sites.append(site)
        records.append(shown)
    assert records[0].keys() != records[1].keys()  # two accounts, two labels

    handled = await asyncio.gather(
        *(f.worker(p).run_once() for f, p in zip(fleets, pools, strict=True))
    )
    assert handled == [1, 1]
    for fleet, site, shown, provider in zip(fleets, sites, records, providers, strict=True):
        done = fleet.inventory.sites.site(site.id)
        assert done is not None and done.state == SiteState.ACTIVE, done
        [version] = fleet.inventory.sites.versions(site.id)
        assert _sans(version.fullchain_pem) == sorted(names)
        # Every name this fleet wrote or cleared is its own account's target.
        assert provider.written == {t for t in shown.values()}
    assert not providers[0].written & providers[1].written

    # `acmekit fleet add` prints the CNAME for a site added now, at this account's label.
    added = CliRunner().invoke(
        fleet_cli,
        ["add", "--db", f"sqlite:///{fleets[0].tmp_path / 'fleet.db'}", "--method",
         "dns-account-01", "--delegation-zone", ZONE, f"*.other.{base}"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    url = fleets[0].inventory.cas.account_url("ca")
    assert url is not None
    target = account_delegation_target(f"other.{base}", ZONE, url)
    assert f"{dnsaccount.record_name(f'other.{base}', url)}. CNAME {target}" in added.output


def test_dns_account_01_sites_need_the_dns_api() -> None:
    refused = refusal(["a.acct.test"], ChallengeMethod.DNS_ACCOUNT_01, dns01=False)
    assert refused is not None and "dns-account-01 was asked for" in refused
    assert refusal(["*.a.acct.test"], ChallengeMethod.DNS_ACCOUNT_01, dns01=True) is None
    # A dns-persist-01 wildcard needs none: its owner publishes the record.
    assert refusal(["*.a.acct.test"], ChallengeMethod.DNS_PERSIST_01, dns01=False) is None
