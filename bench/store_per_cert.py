"""The CA's storage per certificate, in process: statements, transactions, and the CPU and
wall time spent in the store, on SQLite and PostgreSQL.

The CA runs in this process as the component tests run it (the ASGI app called directly,
no listener or TLS, a real `acmekit dns` and a real http-01 responder on loopback), with
rate limits off and lint off as `bench/server.py` runs it, CAA on. Each certificate is the
ordinary flow, one after another: newOrder, the authorization, the http-01 challenge, a
poll of the authorization, finalize, a poll of the order, the download. Counted at the
driver (acmekit_testkit.sqlcount): statements and transactions (SQLite: write
transactions, its BEGIN; PostgreSQL: commits of explicit transactions; a statement in
autocommit is its own). Timed: process CPU per certificate of the whole flow, and the
wall and CPU time inside the store's transactions (`Database.raw`, `Database.once` and
`Database.tx`) on the event loop's thread: the time the loop is held by SQL (writes
handed to a worker thread are not counted).

    .venv/bin/python bench/store_per_cert.py [--certs 200] [--backends sqlite,postgresql]

Side by side with no peer: it compares revisions of this CA with each other (run it on
each), not with Pebble; `bench/server.py` does that.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import fresh_database
from acmekit.protocol.challenges import key_authorization
from acmekit.server.config import LintSettings, RateLimits, ServerConfig
from acmekit.server.repos import base
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.sqlcount import counting


@dataclass
class Spent:
    """Time inside the store's transactions on the loop's thread (nested ones once)."""

    wall: float = 0.0
    cpu: float = 0.0
    depth: int = 0


def _timed(spent: Spent, method: Callable[..., AbstractContextManager[Any]]) -> Any:
    @contextmanager
    def wrapper(self: Any) -> Iterator[Any]:
        if threading.current_thread() is not threading.main_thread():
            with method(self) as inner:  # a worker thread's: not the loop's time
                yield inner
            return
        spent.depth += 1
        w, c = time.perf_counter(), time.thread_time()
        try:
            with method(self) as inner:
                yield inner
        finally:
            spent.depth -= 1
            if spent.depth == 0:
                spent.wall += time.perf_counter() - w
                spent.cpu += time.thread_time() - c

    return wrapper


@contextmanager
def timing_store() -> Iterator[Spent]:
    spent = Spent()
    names = [n for n in ("raw", "once", "tx") if hasattr(base.Database, n)]
    saved = {n: getattr(base.Database, n) for n in names}
    for n in names:
        setattr(base.Database, n, _timed(spent, saved[n]))
    try:
        yield spent
    finally:
        for n in names:
            setattr(base.Database, n, saved[n])


async def one_certificate(flow: Flow, name: str) -> None:
    resp = await flow.order(name)
    assert resp.status == 201, resp.body
    order_url = resp.header("location") or ""
    authz_url = resp.json()["authorizations"][0]
    authz = (await flow.get(authz_url)).json()
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    flow.responder.tokens[ch["token"]] = key_authorization(ch["token"], flow.key)
    assert (await flow.acme.post(ch["url"], {}, flow.key, flow.kid)).status == 200
    await flow.acme.app.authority.drain()
    assert (await flow.get(authz_url)).json()["status"] == "valid"
    done = await flow.finalize(order_url, (name,))
    assert done.status == 200, done.body
    await flow.acme.app.authority.drain()
    final = (await flow.get(order_url)).json()
    assert final["status"] == "valid", final
    assert (await flow.get(final["certificate"])).status == 200


async def measure(config: ServerConfig, responder: Http01Responder, certs: int) -> dict[str, float]:
    with counting() as count, timing_store() as spent:
        assembly = assemble(config)
        try:
            flow = Flow(RawAcme(assembly.app), responder)
            assert (await flow.account()).status == 201
            await one_certificate(flow, "warm.example.test")
            mark, wall0, cpu0 = count.mark(), spent.wall, spent.cpu
            p0 = time.process_time()
            for i in range(certs):
                await one_certificate(flow, f"c{i}.example.test")
            cpu = time.process_time() - p0
            statements, transactions = count.since(mark)
            store_wall, store_cpu = spent.wall - wall0, spent.cpu - cpu0
        finally:
            await assembly.app.close()
            assembly.store.engine.dispose()
    return {
        "statements": statements / certs,
        "transactions": transactions / certs,
        "cpu_ms": 1000 * cpu / certs,
        "store_wall_ms": 1000 * store_wall / certs,
        "store_cpu_ms": 1000 * store_cpu / certs,
    }


async def run(backends: list[str], certs: int, tmp: Path) -> None:
    print(f"{certs} certificates, one after another, in process; rate limits off, lint off")
    print(
        f"{'backend':<12}{'stmts/cert':>11}{'tx/cert':>9}{'CPU ms/cert':>13}"
        f"{'store wall ms':>15}{'store CPU ms':>14}"
    )
    responder = Http01Responder()
    await responder.start()
    try:
        (tmp / "dns").mkdir()
        with dns_server_process(tmp / "dns") as dns:
            for backend in backends:
                with fresh_database(backend, tmp, f"{backend}.db") as url:
                    config = ServerConfig(
                        state_dir=tmp / f"ca-{backend}",
                        db=url,
                        dns_resolver=f"127.0.0.1:{dns.dns_port}",
                        http01_port=responder.port,
                        validation_timeout=5.0,
                        validation=TEST_VALIDATION,
                        rate_limits=RateLimits(enabled=False),
                        lint=LintSettings(enabled=False),
                    )
                    r = await measure(config, responder, certs)
                print(
                    f"{backend:<12}{r['statements']:>11.1f}{r['transactions']:>9.1f}"
                    f"{r['cpu_ms']:>13.2f}{r['store_wall_ms']:>15.2f}{r['store_cpu_ms']:>14.2f}"
                )
    finally:
        await responder.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acmekit-store-bench-") as tmp:
        asyncio.run(run(args.backends.split(","), args.certs, Path(tmp)))


if __name__ == "__main__":
    main()
