"""newOrder by its count of names: round trips (PostgreSQL), statements, and the CA's CPU
per request, on SQLite and PostgreSQL.

The CA runs in this process as the component tests run it (the ASGI app called directly,
no listener or TLS), rate limits off and lint off as `bench/store_per_cert.py` runs it.
For each count of names: a newOrder of names never seen (every name's candidates read,
none found, an authorization made for each), then a newOrder of the same names again
(each one's authorization found and reused). Each request's nonce is fetched before it
and not counted. Counted at the driver (acmekit_testkit.sqlcount): statements and, on
PostgreSQL, round trips, the nonce's and the account's included.

    .venv/bin/python bench/new_order_names.py [--names 1,10,25,100] [--orders 20]

`--orders N` also times N newOrders of the largest count each way (process CPU per
request, the client's JWS signing in this process included). Under callgrind,
`--only new` (or `reused`) times one of the two: each is made inside `operator.call`,
and nothing else is:

    valgrind --tool=callgrind --toggle-collect=_operator_call \\
        --callgrind-out-file=out.%p .venv/bin/python bench/new_order_names.py \\
        --backends sqlite --names 100 --orders 10 --only reused

and the dump's total over N is the instructions of one request (`bench/_callgrind.py`'s
`read_dump`). Side by side with no peer: run it on each revision.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import fresh_database
from acmekit.server.config import LintSettings, RateLimits, ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
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


def _timed(loop: asyncio.AbstractEventLoop, work: Callable[[], Awaitable[None]]) -> float:
    """Process CPU of `work`, run inside `operator.call` (callgrind's toggle)."""
    cpu = time.process_time()
    operator.call(lambda: loop.run_until_complete(work()))
    return time.process_time() - cpu


def measure(backend: str, url: str, tmp: Path, counts: list[int], orders: int, only: str) -> None:
    config = ServerConfig(
        state_dir=tmp / f"ca-{backend}",
        db=url,
        dns_resolver="127.0.0.1:9",  # never asked: newOrder resolves nothing
        http01_port=9,
        validation=TEST_VALIDATION,  # as the tests: names under .test allowed
        rate_limits=RateLimits(enabled=False),
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

                for kind, work in (("new", fresh_orders), ("reused", reused_orders)):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", default="1,10,25,100")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--orders", type=int, default=0, help="time N newOrders each way")
    parser.add_argument(
        "--only", choices=("new", "reused"), default="", help="time one of the two (callgrind)"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.names.split(",")]
    print("newOrder, in process; rate limits off, lint off")
    print(f"{'backend':<12}{'names':>6}{'stmts':>8}{'again':>8}{'trips':>8}{'again':>8}")
    with tempfile.TemporaryDirectory(prefix="acmekit-names-bench-") as tmp:
        for backend in args.backends.split(","):
            with fresh_database(backend, Path(tmp), f"{backend}.db") as url:
                measure(backend, url, Path(tmp), counts, args.orders, args.only)


if __name__ == "__main__":
    main()
