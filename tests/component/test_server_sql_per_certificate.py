"""How much SQL one certificate costs the CA: a structural bound, not a timing.

One full in-process issuance (newOrder, the authorization, the http-01 challenge and its
validation, a poll, finalize and the issuance, the order, the certificate download),
counted at the driver (acmekit_testkit.sqlcount), on both databases, with the default
configuration (rate limits on; nonces in process scope on SQLite, in the database on
PostgreSQL). The bounds are what the store sends now (docs/decisions.md, "SQL per
certificate"); a change that adds round trips to the request path fails here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.sqlcount import SqlCount, counting

# (statements, transactions) per certificate, at most: what the store sends now
# (docs/decisions.md, "The store's CPU per certificate" and "The store per request").
# PostgreSQL's two explicit transactions are finalize's (the issuance limits taken with
# the claim) and the challenge's start (its authorization's row locked first, so that two
# processes cannot start two of its challenges: RFC 8555 §7.1.6, a READ COMMITTED
# snapshot does not see the other's start); its other writes are single statements in
# autocommit. The download of a certificate this process recorded sends none. On SQLite
# a lone write (the challenge's start) is its own transaction in autocommit, not counted.
# SQLite's trace reports each run of a trigger's program as the statement that fired it:
# three of its statements are tr_challenge_decides's (migration 0011), on the challenge's
# start and its outcome, run within them, not sent.
BOUNDS = {"sqlite": (35, 5), "postgresql": (28, 2)}
# PostgreSQL's round trips per certificate, at most (docs/decisions.md, "Rate limits'
# round trips"): 13 with rate limits off; on, newOrder's limit reads and the challenge's
# failed-validations read ride with the account's, and finalize's BEGIN and takes with
# its claim (one batch, then COMMIT). Were 21.
ROUND_TRIPS = 15
# A renewal's (a second order for the name, its authorization valid and reused; the
# authorization read, finalize, the order's poll, the download): the order's row written
# alone, in autocommit (docs/decisions.md, "A renewal's order"). Were (21, 4), (19, 2)
# and 13 round trips.
RENEWAL_BOUNDS = {"sqlite": (21, 3), "postgresql": (19, 1)}
RENEWAL_ROUND_TRIPS = 11


@pytest.fixture
async def counted(ca_config: ServerConfig) -> AsyncIterator[tuple[Assembly, SqlCount]]:
    with counting() as count:
        assembly = assemble(ca_config)
        yield assembly, count
        await assembly.app.close()
        assembly.store.engine.dispose()


async def test_sql_per_certificate(
    counted: tuple[Assembly, SqlCount], responder: Http01Responder, db_url: str
) -> None:
    assembly, count = counted
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    await flow.one_certificate("warm.example.test")  # first-use reads (settings) settle
    mark = count.mark()
    start, first_trip = len(count.texts), len(count.trips)
    await flow.one_certificate("counted.example.test")
    statements, transactions = count.since(mark)
    # Not the certificate's: a connection's set-up, when a worker thread opens its first.
    trips = [t for t in count.trips[first_trip:] if t != ("DEALLOCATE ALL",)]
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    most = BOUNDS[backend]
    sent = "\n".join(count.texts[start:])
    print(f"{backend}: {statements} statements, {transactions} transactions\n{sent}")
    assert statements > 0 and transactions > 0  # the counting sees the store at all
    assert statements <= most[0], sent
    assert transactions <= most[1], sent
    if backend == "postgresql":
        assert 0 < len(trips) <= ROUND_TRIPS, "\n".join(" | ".join(t)[:60] for t in trips)


async def test_sql_per_renewal(
    counted: tuple[Assembly, SqlCount], responder: Http01Responder, db_url: str
) -> None:
    assembly, count = counted
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    await flow.one_certificate("warm.example.test")
    await flow.one_renewal("warm.example.test")  # first-use reads settle
    await flow.one_certificate("counted.example.test")
    mark, start, first_trip = count.mark(), len(count.texts), len(count.trips)
    await flow.one_renewal("counted.example.test")
    statements, transactions = count.since(mark)
    trips = [t for t in count.trips[first_trip:] if t != ("DEALLOCATE ALL",)]
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    sent = "\n".join(count.texts[start:])
    assert 0 < statements <= RENEWAL_BOUNDS[backend][0], sent
    assert 0 < transactions <= RENEWAL_BOUNDS[backend][1], sent
    if backend == "postgresql":
        shown = "\n".join(" | ".join(t)[:60] for t in trips)
        assert 0 < len(trips) <= RENEWAL_ROUND_TRIPS, shown
