"""The rate-limit reads made with the request's account (one round trip on PostgreSQL):
newOrder's issuance buckets, read from the payload's names at a time taken before the
order's own; the challenge's failed validations bucket, under a key the database makes.
The account's pending authorizations are counted at the order's time, with its
new-order take (not ahead of the signature: the count's cost grows with the account).
The refusals are the ones the handler's own reads would give: the buckets are judged at
the order's time (with the process's clock), an authorization expiring between the two
times is not counted as pending, after the clock went back it is counted, and a bucket
read under another key than the handler's is read again. And finalize's takes, sent with its
claim, refuse and roll back as before. On both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from acmekit.protocol.problems import AcmeError
from acmekit.server.config import Limit, RateLimits, ServerConfig
from acmekit.server.ratelimits import LimitName, RateLimiter, Subject
from acmekit.server.records import AccountRecord
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder
from acmekit_testkit.pendingorders import (
    new_order_payload,
    new_order_read_ahead,
    pending_authorization,
    registered,
)

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
WEEK = 7 * 86400
LIMITS = RateLimits(
    certificates_per_domain=Limit(1, timedelta(days=7)),
    failed_validations=Limit(1, timedelta(hours=1)),
    pending_authorizations_per_account=1,
)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


@pytest.fixture
async def clocked(ca_config: ServerConfig) -> AsyncIterator[tuple[Assembly, Clock]]:
    clock = Clock()
    assembly = assemble(replace(ca_config, rate_limits=LIMITS), now=clock.now)
    yield assembly, clock
    await assembly.app.close()
    assembly.store.engine.dispose()


def _order(
    assembly: Assembly, flow: Flow, account: AccountRecord, clock: Clock, ahead_at: datetime,
    order_at: datetime, name: str,
) -> int | None:  # fmt: skip
    """newOrder for `name`, its reads made ahead at `ahead_at` (sent with the account's
    read, as a request's are), the order made at `order_at`: None if it was made, else
    the Retry-After of its rateLimited refusal."""
    clock.at = ahead_at
    reads = new_order_read_ahead(assembly, flow, account, name)
    assert reads.limits is not None  # the limits' reads were made
    clock.at = order_at
    try:
        assembly.app.authority.new_order(account, new_order_payload(name), reads)
    except AcmeError as exc:
        assert exc.problem.type.endswith(":rateLimited"), exc.problem
        return exc.problem.retry_after
    return None


async def test_the_buckets_read_ahead_are_judged_at_the_orders_time(
    clocked: tuple[Assembly, Clock], responder: Http01Responder
) -> None:
    assembly, clock = clocked
    flow, account = await registered(assembly, responder)
    await flow.issue("one.limit.test")  # the domain's one certificate this week, at T0
    later = T0 + timedelta(seconds=200)
    wait = _order(
        assembly, flow, account, clock, T0 + timedelta(seconds=100), later, "b.limit.test"
    )
    assert wait == WEEK - 200  # judged at the order's time, not the read's (WEEK - 100)
    assert _order(assembly, flow, account, clock, T0, later, "other.test") is None


async def test_one_expiring_between_the_two_times_is_not_counted_pending(
    clocked: tuple[Assembly, Clock], responder: Http01Responder
) -> None:
    assembly, clock = clocked
    flow, account = await registered(assembly, responder)
    # Pending when the count is read ahead (T0), expired at the order's time.
    pending_authorization(
        assembly.store, account.id, "edge.example.test", T0 + timedelta(seconds=5)
    )
    later = T0 + timedelta(seconds=10)
    assert _order(assembly, flow, account, clock, T0, later, "new.example.test") is None


async def test_after_the_clock_went_back_the_pending_count_is_read_again(
    clocked: tuple[Assembly, Clock], responder: Http01Responder
) -> None:
    assembly, clock = clocked
    flow, account = await registered(assembly, responder)
    # Expired at the time read ahead (20 s later), pending at the order's: the ceiling
    # of one is full.
    pending_authorization(
        assembly.store, account.id, "back.example.test", T0 + timedelta(seconds=10)
    )
    ahead_at = T0 + timedelta(seconds=20)
    wait = _order(assembly, flow, account, clock, ahead_at, T0, "new.example.test")
    assert wait == 10  # when the pending one expires


def _reserved(assembly: Assembly, order_url: str) -> int:
    order_id = order_url.rsplit("/", 1)[1]
    with assembly.store.engine.connect() as conn:
        query = sa.text("SELECT COUNT(*) FROM certificates WHERE order_id = :o")
        return int(conn.execute(query, {"o": order_id}).scalar_one())


async def test_a_finalize_over_a_limit_is_refused_and_leaves_all_as_it_was(
    clocked: tuple[Assembly, Clock], responder: Http01Responder
) -> None:
    """On PostgreSQL the claim is sent with the takes and the takes judged after it:
    a refused take rolls the claim, its serial's reservation and the other takes back
    (duplicate_certificates, after the refused certificates_per_domain in key order,
    was granted in the batch), as when the claim came after the takes."""
    assembly, _ = clocked
    flow, _ = await registered(assembly, responder)
    first, second = await flow.order("atomic.test"), await flow.order("atomic.test")
    await flow.solve(first.json())
    assert (await flow.finalize(first.header("location") or "", ("atomic.test",))).status == 200
    buckets = assembly.store.buckets
    keys = ["certificates_per_domain:atomic.test"]
    keys.append(next(k for k in _bucket_keys(assembly) if k.startswith("duplicate_")))
    tats = [buckets.tat(k) for k in keys]
    url = second.header("location") or ""
    refused = await flow.finalize(url, ("atomic.test",))
    assert (refused.status, refused.problem_type) == (429, "rateLimited")
    assert refused.header("retry-after") == str(WEEK)
    assert "certificates_per_domain" in refused.json()["detail"]
    assert [buckets.tat(k) for k in keys] == tats
    assert (await flow.get(url)).json()["status"] == "ready"
    assert _reserved(assembly, url) == 0


def _bucket_keys(assembly: Assembly) -> list[str]:
    with assembly.store.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(sa.text("SELECT key FROM rate_buckets"))]


async def test_a_failures_bucket_read_under_another_key_is_read_again(
    clocked: tuple[Assembly, Clock], responder: Http01Responder
) -> None:
    assembly, _ = clocked
    _, account = await registered(assembly, responder)
    pending_authorization(assembly.store, account.id, "full.example.test", T0 + timedelta(days=1))
    pending_authorization(assembly.store, account.id, "empty.example.test", T0 + timedelta(days=1))
    limits, name = assembly.app.authority.limits, LimitName.FAILED_VALIDATIONS
    full = Subject(f"{account.id}:full.example.test")
    limits.spend(name, full, T0)  # its one failure an hour
    # Read with the full bucket's own challenge, then with the other's: refused alike.
    for challenge in ("z-full.example.testh", "z-empty.example.testh"):
        ahead = limits.check_of_challenge_ahead(name, challenge, T0)
        assert ahead is not None
        with pytest.raises(AcmeError) as got:
            limits.check(name, full, T0 + timedelta(seconds=600), ahead)
        assert got.value.problem.retry_after == 3000  # the full one's, judged at its time
    empty = Subject(f"{account.id}:empty.example.test")
    ahead = limits.check_of_challenge_ahead(name, "z-full.example.testh", T0)
    limits.check(name, empty, T0, ahead)  # the full bucket, read for another key: not taken


@pytest.mark.parametrize(
    ("limit", "reads", "refused"),
    [
        (Limit(5, timedelta(hours=1)), True, False),
        (Limit(0, timedelta(hours=1), {"acct-x": 2}), True, True),  # an override may read
        (Limit(5, timedelta(0), {"acct-x": 2}), False, False),  # no period: none refused
        (Limit(0, timedelta(hours=1), {"acct-x": 0}), False, True),  # refused, no read
    ],
    ids=["limited", "zero-overridden", "no-period", "zero"],
)
async def test_a_failures_limit_that_reads_no_bucket_is_not_read_ahead(
    clocked: tuple[Assembly, Clock],
    responder: Http01Responder,
    limit: Limit,
    reads: bool,
    refused: bool,
) -> None:
    """The challenge's failed-validations bucket is read ahead only where `check` may
    read one: under some subject's rate (an override keeps the limit's period). The
    check's answer is the same."""
    assembly, _ = clocked
    _, account = await registered(assembly, responder)
    pending_authorization(assembly.store, account.id, "f.example.test", T0 + timedelta(days=1))
    limits = RateLimiter(replace(LIMITS, failed_validations=limit), assembly.store.buckets)
    name, subject = LimitName.FAILED_VALIDATIONS, Subject(f"{account.id}:f.example.test")
    ahead = limits.check_of_challenge_ahead(name, "z-f.example.testh", T0)
    assert (ahead is not None) == reads
    if refused:
        with pytest.raises(AcmeError) as got:
            limits.check(name, subject, T0, ahead)
        assert got.value.problem.retry_after == 3600
    else:
        limits.check(name, subject, T0, ahead)
