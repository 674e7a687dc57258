"""The fleet's own count of each CA's certificates per registered domain, against two of
our CAs in-process. The first CA enforces 3 certificates per registered domain per
week itself and the fleet is told the same: three sites under one registered domain
go to it, the fourth to the second CA, and no order ever meets `rateLimited`. When no
CA has room, the site waits for the first refill without counting a failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from acmekit.client import Client
from acmekit.client.transport import AsgiTransport
from acmekit.fleet import planner
from acmekit.fleet.acme import new_key
from acmekit.fleet.cas import CaSpec
from acmekit.fleet.model import ChallengeMethod, SiteState
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.config import Limit, RateLimits
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.fleet_cas import TwoCaFleet, directory, two_ca_fleet

WEEK = timedelta(days=7)


@pytest.fixture
async def fleet(tmp_path: Path, dns_server: DnsServerHandle) -> AsyncIterator[TwoCaFleet]:
    limited = RateLimits(certificates_per_domain=Limit(3, WEEK))
    configs = {"ca-one": {"rate_limits": limited}, "ca-two": {}}
    async with two_ca_fleet(tmp_path, dns_server.dns_port, configs) as f:
        yield f


async def test_the_fourth_site_under_a_domain_goes_to_the_second_ca(fleet: TwoCaFleet) -> None:
    pool = await fleet.pool(
        [
            CaSpec("ca-one", directory("ca-one"), certificates_per_domain=3),
            CaSpec("ca-two", directory("ca-two"), certificates_per_domain=1),
        ]
    )
    worker = fleet.worker(pool)
    http = ChallengeMethod.HTTP_01
    names = [(f"s{i}.limits.test",) for i in range(4)] + [("other.test",)]
    ids = fleet.inventory.sites.add_sites(names, http, fleet.now())
    assert await worker.run_once() == 5
    cas = [fleet.inventory.sites.versions(i)[0].ca for i in ids]
    assert sorted(cas[:4]) == ["ca-one", "ca-one", "ca-one", "ca-two"]
    assert cas[4] == "ca-one"
    # Every order succeeded: the first CA never answered rateLimited.
    assert sum(worker.metrics.failed.values()) == 0
    assert worker.metrics.issued == {"ca-one": 4, "ca-two": 1}
    assert fleet.inventory.cas.count_issued("ca-one", "limits.test") == 3

    # The first CA's own limit is real: a fourth order of ours for the domain is refused.
    async with Client(
        directory("ca-one"),
        new_key(),
        transport=AsgiTransport(fleet.cas["ca-one"].app),
    ) as direct:
        await direct.register()
        with pytest.raises(AcmeError) as refused:
            await direct.new_order(["s9.limits.test"])
        assert refused.value.problem.type == ProblemType.RATE_LIMITED

    # Now neither CA has room for limits.test: the fifth site waits for the first
    # refill, a week after the earliest certificate, and is not failing.
    before = fleet.now()
    late = fleet.inventory.sites.add_site(("s5.limits.test",), http, before)
    assert await worker.run_once() == 1
    site = fleet.inventory.sites.site(late.id)
    assert site is not None and site.state == SiteState.PENDING and site.failure_count == 0
    assert site.current_version == 0 and site.next_action_at is not None
    assert before + 7 * planner.DAY - planner.MINUTE < site.next_action_at
    assert site.next_action_at <= fleet.now() + 7 * planner.DAY
    assert site.last_problem is not None and "limits" in site.last_problem["detail"]
    assert sum(worker.metrics.failed.values()) == 0
