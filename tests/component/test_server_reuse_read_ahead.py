"""newOrder reads each identifier's reusable authorizations with the request's account
(one round trip on PostgreSQL), for a horizon taken from the clock before the order's
own: the answer is the one the order's own horizon would have read. An authorization
that expires between the two horizons is not reused; one read for a later horizon than
the order's (the clock went back) is read again. On both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from acmekit.server.config import ServerConfig
from acmekit.server.records import AccountRecord
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder
from acmekit_testkit.pendingorders import (
    new_order_payload,
    new_order_read_ahead,
    pending_authorization,
    registered,
)
from acmekit_testkit.sqlcount import SqlCount, counting

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


@pytest.fixture
async def clocked(
    ca_config: ServerConfig,
) -> AsyncIterator[tuple[Assembly, Clock, SqlCount]]:
    clock = Clock()
    with counting() as count:
        assembly = assemble(ca_config, now=clock.now)
        yield assembly, clock, count
        await assembly.app.close()
        assembly.store.engine.dispose()


def _order(
    assembly: Assembly, flow: Flow, account: AccountRecord, clock: Clock, ahead_at: datetime,
    order_at: datetime, *names: str,
) -> tuple[str, ...]:  # fmt: skip
    """newOrder's authorizations, its reads made ahead at `ahead_at` (and sent with the
    account's read, as a request does), the order made at `order_at`."""
    clock.at = ahead_at
    reads = new_order_read_ahead(assembly, flow, account, *names)
    clock.at = order_at
    view = assembly.app.authority.new_order(account, new_order_payload(*names), reads)
    return view.record.authz_ids


async def test_a_live_authorization_read_ahead_is_reused(
    clocked: tuple[Assembly, Clock, SqlCount], responder: Http01Responder
) -> None:
    assembly, clock, _ = clocked
    flow, account = await registered(assembly, responder)
    live = pending_authorization(
        assembly.store, account.id, "live.example.test", T0 + timedelta(days=3)
    )
    got = _order(assembly, flow, account, clock, T0, T0 + timedelta(seconds=1), "live.example.test")
    assert got == (live,)


async def test_one_expiring_between_the_two_horizons_is_not_reused(
    clocked: tuple[Assembly, Clock, SqlCount], responder: Http01Responder
) -> None:
    assembly, clock, _ = clocked
    flow, account = await registered(assembly, responder)
    # Past the horizon read ahead (T0 + 1 day), not past the order's (10 s later).
    edge = pending_authorization(
        assembly.store, account.id, "edge.example.test", T0 + timedelta(days=1, seconds=5)
    )
    later = T0 + timedelta(seconds=10)
    got = _order(assembly, flow, account, clock, T0, later, "edge.example.test")
    assert len(got) == 1 and got[0] != edge


async def test_after_the_clock_went_back_the_candidates_are_read_again(
    clocked: tuple[Assembly, Clock, SqlCount], responder: Http01Responder
) -> None:
    assembly, clock, _ = clocked
    flow, account = await registered(assembly, responder)
    # Not past the horizon read ahead (20 s later), past the order's.
    kept = pending_authorization(
        assembly.store, account.id, "back.example.test", T0 + timedelta(days=1, seconds=10)
    )
    ahead_at = T0 + timedelta(seconds=20)
    got = _order(assembly, flow, account, clock, ahead_at, T0, "back.example.test")
    assert got == (kept,)
