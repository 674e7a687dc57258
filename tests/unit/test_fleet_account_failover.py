"""A CA that refuses the fleet's account (new terms to agree to, an account it no longer
knows, External Account Binding it requires) refuses it for every site: that is the CA's
side, so the fleet fails over to its next CA and passes the first over, as for an
outage, rather than failing (and alerting) every site in turn with a working CA behind.

The issuers are the local test CA (testkit/acmekit_testkit/fleet_testca.py); the first
answers every order with the problem an ACME CA sends (RFC 8555 §6.7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from acmekit.fleet.cas import CaEntry, CaPool, CaSpec
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import OrderRequest, OrderStarted
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol.problems import ProblemType, problem
from acmekit_testkit.fleet_testca import FakeClock, LocalIssuer, MemoryEdge

START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class RefusingIssuer(LocalIssuer):
    """A CA that refuses the account with `refusal` at every order."""

    refusal: ProblemType = ProblemType.USER_ACTION_REQUIRED
    orders: int = 0

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        self.orders += 1
        raise problem(self.refusal, "the account cannot order here")


@pytest.mark.parametrize(
    "refusal",
    [
        ProblemType.USER_ACTION_REQUIRED,
        ProblemType.ACCOUNT_DOES_NOT_EXIST,
        ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
    ],
)
async def test_an_account_the_ca_refuses_fails_over(tmp_path: Path, refusal: ProblemType) -> None:
    clock = FakeClock(START)
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    first = RefusingIssuer(now=clock.now, name="a", refusal=refusal)
    second = LocalIssuer(now=clock.now, name="b")
    specs = [CaSpec(n, f"https://{n}.invalid/directory", concurrency=None) for n in "ab"]
    pool = CaPool([CaEntry(s, i) for s, i in zip(specs, (first, second), strict=True)])
    names = [(f"s{i}.account.test",) for i in range(6)]
    inventory.sites.add_sites(names, ChallengeMethod.HTTP_01, to_us(START))
    config = WorkerConfig(owner="w", concurrency=1)  # one site after another
    worker = Worker(inventory, pool, [MemoryEdge("edge")], clock, config)

    assert await worker.run_once() == 6
    sites = inventory.sites.page(limit=10)
    assert [s.state for s in sites] == [SiteState.ACTIVE] * 6  # from the second CA
    assert len(second.issued) == 6
    assert first.orders == 3  # then passed over (failover_after), not asked for each site
    inventory.close()
