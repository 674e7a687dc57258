"""newOrder by its count of names: round trips (PostgreSQL), statements, and the CA's CPU
per request, on SQLite and PostgreSQL.

The CA runs in this process as the component tests run it (the ASGI app called directly,
no listener or TLS), rate limits off (`--limits`: on, as by default) and lint off as
`bench/store_per_cert.py` runs it.
For each count of names: a newOrder of names never seen (every name's candidates read,
none found, an authorization made for each), then a newOrder of the same names again
(each one's authorization found and reused). Each request's nonce is fetched before it
and not counted. Counted at the driver (acmekit_testkit.sqlcount): statements and, on
PostgreSQL, round trips, the nonce's and the account's included.

    .venv/bin/python bench/new_order_names.py [--names 1,10,25,100] [--orders 20]

`--orders N` also times N newOrders of the largest count each way (process CPU per
request, the client's JWS signing in this process included). Under callgrind,
`--only new` (or `reused`) times one of the two: each is made inside `operator.call`,
and nothing else is. `--only forged` times N newOrders of the largest count signed by
another key than the account's (each refused, "JWS signature is invalid": what anyone
with a nonce and an account's URL can make the CA do), their nonces fetched and their
JWSs signed before `operator.call`, so that only the CA's work is inside it:

    valgrind --tool=callgrind --toggle-collect=_operator_call \\
        --callgrind-out-file=out.%p .venv/bin/python bench/new_order_names.py \\
        --backends sqlite --names 100 --orders 10 --only reused

and the dump's total over N is the instructions of one request (`bench/_callgrind.py`'s
`read_dump`). `--reads one|many|ahead` times the store's reads of the candidates alone,
N times (default 100) for each count of names, a way each run (`reads`). Side by side
with no peer: run it on each revision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import fresh_database
from acmekit.protocol import jose
from acmekit.server.config import LintSettings, RateLimits, ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme, new_key
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.sqlcount import SqlCount, counting


def _names(tag: str, n: int) -> list[str]:
    return [f"{tag}-{i}.example.test" for i in range(n)]


async def _order(flow: Flow, names: list[str]) -> None:
    """One newOrder, its nonce fetched first (not counted by the caller)."""
    acme = flow.acme
    payload = {"identifiers": [{"type": "dns", "value": n} for n in names]}
    url = f"{acme.base}/acme/new-order"
    resp = await acme.post(url, payload, flow.key, flow.kid, nonce=await acme.nonce())
    assert resp.status == 201, resp.body


async def _counted(count: SqlCount, flow: Flow, names: list[str]) -> tuple[int, int]:
    """(statements, round trips) of one newOrder, its nonce's fetch not counted."""
    acme = flow.acme
    payload = {"identifiers": [{"type": "dns", "value": n} for n in names]}
    url = f"{acme.base}/acme/new-order"
    nonce = await acme.nonce()
    statements, trips = count.statements, count.round_trips
    resp = await acme.post(url, payload, flow.key, flow.kid, nonce=nonce)
    assert resp.status == 201, resp.body
    return count.statements - statements, count.round_trips - trips


async def _forged(flow: Flow, n: int, orders: int) -> Callable[[], Awaitable[None]]:
    """`orders` newOrders of n names signed by another key than the account's, each
    with a nonce of its own, made now; what sends them (each refused) when called."""
    acme = flow.acme
    url = f"{acme.base}/acme/new-order"
    payload = {"identifiers": [{"type": "dns", "value": v} for v in _names("forged", n)]}
    other = new_key()
    bodies = []
    for _ in range(orders):
        signed = jose.sign(other, payload, url=url, nonce=await acme.nonce(), kid=flow.kid)
        bodies.append(json.dumps(signed).encode())

    async def send() -> None:
        for body in bodies:
            resp = await acme.request("POST", url, body, "application/jose+json")
            assert resp.json()["detail"] == "JWS signature is invalid", resp.body

    return send


def _timed(loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[None]]) -> float:
    """Process CPU of `work`, run inside `operator.call` (callgrind's toggle)."""
    cpu = time.process_time()
    operator.call(lambda: loop.run_until_complete(work()))
    return time.process_time() - cpu


def measure(
    backend: str, url: str, tmp: Path, counts: list[int], orders: int, only: str, limits: bool
) -> None:
    config = ServerConfig(
        state_dir=tmp / f"ca-{backend}",
        db=url,
        dns_resolver="127.0.0.1:9",  # never asked: newOrder resolves nothing
        http01_port=9,
        validation=TEST_VALIDATION,  # as the tests: names under .test allowed
        rate_limits=RateLimits(enabled=limits),
        lint=LintSettings(enabled=False),
    )
    loop = asyncio.new_event_loop()
    with counting() as count:
        assembly = assemble(config)
        try:
            flow = Flow(RawAcme(assembly.app), Http01Responder())
            assert loop.run_until_complete(flow.account()).status == 201
            most = max(counts)
            for warm in ("warm-a", "warm-b"):  # first uses: preparations, caches
                loop.run_until_complete(_order(flow, _names(warm, most)))
                loop.run_until_complete(_order(flow, _names(warm, most)))
            for n in counts:
                names = _names(f"c{n}", n)
                fresh = loop.run_until_complete(_counted(count, flow, names))
                again = loop.run_until_complete(_counted(count, flow, names))
                trips = f"{fresh[1]:>8}{again[1]:>8}" if backend == "postgresql" else " " * 16
                print(f"{backend:<12}{n:>6}{fresh[0]:>8}{again[0]:>8}{trips}")
            if orders:
                reused = _names("warm-a", most)
                batch = iter(range(orders))

                async def fresh_orders() -> None:
                    for i in batch:
                        await _order(flow, _names(f"t{i}", most))

                async def reused_orders() -> None:
                    for _ in range(orders):
                        await _order(flow, reused)

                kinds = [("new", fresh_orders), ("reused", reused_orders)]
                if only == "forged":
                    kinds = [("forged", loop.run_until_complete(_forged(flow, most, orders)))]
                for kind, work in kinds:
                    if only and kind != only:
                        continue
                    cpu = _timed(loop, work)
                    print(
                        f"{backend}: newOrder of {most} names, {kind}: "
                        f"{1000 * cpu / orders:.2f} ms CPU per request ({orders})"
                    )
        finally:
            loop.run_until_complete(assembly.app.close())
            assembly.store.engine.dispose()
            loop.close()


def reads(url: str, way: str, n: int, times: int) -> float:
    """The store's reads of reusable candidates alone, for `n` names each with one live
    candidate, `times` over inside `operator.call`: `one` a statement a name (as the CA
    read every name before, and still reads one), `many` one statement for all
    (`reusable_authorizations_of`), `ahead` (PostgreSQL) each name's read sent with the
    account's before one Sync, as the first ten are. CPU seconds per time."""
    from datetime import UTC, datetime, timedelta

    from acmekit.protocol.messages import (
        AuthorizationStatus,
        ChallengeStatus,
        ChallengeType,
        Identifier,
        IdentifierType,
    )
    from acmekit.server.records import AuthorizationRecord, ChallengeRecord
    from acmekit.server.store import Store
    from acmekit_testkit.pendingorders import stored_account

    store = Store.from_url(url)
    now = datetime.now(UTC)
    stored_account(store, now)
    orders = store.orders
    names = []
    for i in range(n):
        ident = Identifier(IdentifierType.DNS, f"r{i}.example.test")
        ch = ChallengeRecord(f"z{i}c", f"z{i}", ChallengeType.HTTP_01, "t" * 43,
                             ChallengeStatus.PENDING)  # fmt: skip
        orders.add_authorization(AuthorizationRecord(
            f"z{i}", "acct", ident, False, AuthorizationStatus.PENDING,
            now + timedelta(days=7), (ch,),
        ))  # fmt: skip
        names.append((ident, False))
    horizon = now + timedelta(days=1)
    one, many = orders.reusable_authorizations, orders.reusable_authorizations_of
    ahead, account = orders.reusable_authorizations_ahead, store.accounts.account

    def each() -> None:
        for ident, wildcard in names:
            one("acct", ident, wildcard, horizon)

    def together() -> None:
        many("acct", names, horizon)

    def sent_ahead() -> None:
        made = []
        for ident, wildcard in names:
            made.append(ahead("acct", ident, wildcard, horizon))
        account("acct", made)
        for read in made:
            read.result()

    work = {"one": each, "many": together, "ahead": sent_ahead}[way]
    for _ in range(3):  # first uses: preparations, the decoders' caches
        work()

    def timed() -> None:
        for _ in range(times):
            work()

    cpu = time.process_time()
    operator.call(timed)
    cpu = time.process_time() - cpu
    store.engine.dispose()
    return cpu / times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", default="1,10,25,100")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--orders", type=int, default=0, help="time N newOrders each way")
    parser.add_argument(
        "--only",
        choices=("new", "reused", "forged"),
        default="",
        help="time one kind (callgrind); forged: signed by another key, refused",
    )
    parser.add_argument(
        "--reads", choices=("one", "many", "ahead"), default="", help="the store's reads alone"
    )
    parser.add_argument("--limits", action="store_true", help="rate limits on (the default)")
    args = parser.parse_args()
    counts = [int(n) for n in args.names.split(",")]
    if args.reads:
        with tempfile.TemporaryDirectory(prefix="acmekit-names-bench-") as tmp:
            for backend in args.backends.split(","):
                for n in counts:
                    with fresh_database(backend, Path(tmp), f"{backend}-{n}.db") as url:
                        cpu = reads(url, args.reads, n, args.orders or 100)
                    print(f"{backend}: {n} names read {args.reads}: {1e6 * cpu:.0f} µs CPU")
        return
    print(f"newOrder, in process; rate limits {'on' if args.limits else 'off'}, lint off")
    print(f"{'backend':<12}{'names':>6}{'stmts':>8}{'again':>8}{'trips':>8}{'again':>8}")
    with tempfile.TemporaryDirectory(prefix="acmekit-names-bench-") as tmp:
        for backend in args.backends.split(","):
            with fresh_database(backend, Path(tmp), f"{backend}.db") as url:
                measure(backend, url, Path(tmp), counts, args.orders, args.only, args.limits)


if __name__ == "__main__":
    main()
