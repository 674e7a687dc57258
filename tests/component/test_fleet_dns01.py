"""dns-01 through CNAME delegation, against our CA in-process and `acmekit dns` on
loopback (real UDP/TCP queries, real HTTP API).

The customer's `_acme-challenge.shop.example.test` is a CNAME into the zone the fleet
controls; the fleet publishes the TXT values at the end of the chain through the DNS
server's API, and the CA follows the chain when it validates. A wildcard site
(`*.shop.example.test` with its apex: two values at one name) is issued so and
deployed to an edge directory. A site whose http-01 validation fails falls back to
dns-01 because its names are delegated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from acmekit.client.solvers.dns01 import Dns01Solver
from acmekit.fleet.acme import DbHttpSolver
from acmekit.fleet.cas import CaSpec
from acmekit.fleet.delegation import AcmekitDnsProvider, DelegationCheck, delegation_target
from acmekit.fleet.model import ChallengeMethod, SiteState
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.fleet_cas import TwoCaFleet, directory, two_ca_fleet
from acmekit_testkit.ports import free_port

ZONE = "acme-delegation.fleet.test"


@pytest.fixture
async def fleet(tmp_path: Path, dns_server: DnsServerHandle) -> AsyncIterator[TwoCaFleet]:
    # "no-http" validates http-01 on a port where nothing listens: http-01 always fails.
    configs = {"ca-one": {}, "no-http": {"http01_port": free_port()}}
    async with two_ca_fleet(tmp_path, dns_server.dns_port, configs) as f:
        yield f


def _solvers(
    fleet: TwoCaFleet, dns_server: DnsServerHandle
) -> dict[ChallengeType, DbHttpSolver | Dns01Solver]:
    provider = AcmekitDnsProvider(dns_server.api_url)
    dns01 = Dns01Solver(
        provider,
        resolver=("127.0.0.1", dns_server.dns_port),
        nameserver_port=dns_server.dns_port,
        propagation_interval=0.2,
        propagation_timeout=20,
        follow_cname=True,
    )
    return {
        ChallengeType.HTTP_01: DbHttpSolver(fleet.inventory, fleet.now),
        ChallengeType.DNS_01: dns01,
    }


async def _delegate(dns_server: DnsServerHandle, name: str) -> str:
    target = delegation_target(name, ZONE)
    await AcmekitDnsProvider(dns_server.api_url).set_cname(f"_acme-challenge.{name}.", target)
    return target


def _sans(pem: str) -> list[str]:
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


async def test_a_wildcard_site_is_issued_through_delegation(
    fleet: TwoCaFleet, dns_server: DnsServerHandle, tmp_path: Path
) -> None:
    target = await _delegate(dns_server, "shop.example.test")
    check = DelegationCheck(("127.0.0.1", dns_server.dns_port), ZONE)
    assert await check.target("*.shop.example.test") == target
    assert await check.target("undelegated.example.test") is None
    pool = await fleet.pool(
        [CaSpec("ca-one", directory("ca-one"))], _solvers(fleet, dns_server), check
    )
    names = ("*.shop.example.test", "shop.example.test")
    site = fleet.inventory.sites.add_site(names, ChallengeMethod.DNS_01, fleet.now())
    assert await fleet.worker(pool).run_once() == 1

    done = fleet.inventory.sites.site(site.id)
    assert done is not None and done.state == SiteState.ACTIVE, done
    [version] = fleet.inventory.sites.versions(site.id)
    assert _sans(version.fullchain_pem) == sorted(names)
    served = tmp_path / "edge" / "_.shop.example.test" / "fullchain.pem"
    assert served.read_text() == version.fullchain_pem


async def test_http01_failing_falls_back_to_dns01_when_delegated(
    fleet: TwoCaFleet, dns_server: DnsServerHandle
) -> None:
    await _delegate(dns_server, "fallback.example.test")
    check = DelegationCheck(("127.0.0.1", dns_server.dns_port), ZONE)
    pool = await fleet.pool(
        [CaSpec("no-http", directory("no-http"))], _solvers(fleet, dns_server), check
    )
    http = ChallengeMethod.HTTP_01
    delegated = fleet.inventory.sites.add_site(("fallback.example.test",), http, fleet.now())
    plain = fleet.inventory.sites.add_site(("plain.example.test",), http, fleet.now())
    assert await fleet.worker(pool).run_once() == 2

    ok = fleet.inventory.sites.site(delegated.id)
    assert ok is not None and ok.state == SiteState.ACTIVE and ok.current_version == 1
    failed = fleet.inventory.sites.site(plain.id)
    assert failed is not None and failed.current_version == 0 and failed.failure_count == 1
    assert failed.last_problem is not None
    assert "urn:ietf:params:acme:error" in failed.last_problem["type"]
