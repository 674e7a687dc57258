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
`Database.tx`, and the lone statements of `Repository._one`, `_all` and `_run`) on the
event loop's thread: the time the loop is held by SQL (writes
handed to a worker thread are not counted).

    .venv/bin/python bench/store_per_cert.py [--certs 200] [--backends sqlite,postgresql]

`--renewals` makes each measured certificate a renewal: a second order for a name the
account holds a valid authorization for (issued first, outside the count), so newOrder
reuses it and the order is ready at once; then the client's read of the authorization,
finalize, the order's poll and the download. `--renewals ari` has the order name the
certificate it replaces (RFC 9773 §5, `replaces`), `--renewals plain` not.
`--read-challenge` has the client read the challenge (POST-as-GET) before answering it.

`--split` also times, on every thread, the repositories' public methods (the store's CPU
as its callers pay it: SQL, row decoding, records), and within them the driver's calls
(execute, fetch, commit and rollback on the DBAPI cursor and connection; on PostgreSQL
the statements sent through psycopg's C layer and their rows loaded) and SQLAlchemy's
pool (checkout and checkin of `engine.raw_connection()`); the rest of the repositories'
time is our code. The timers cost a few µs a call themselves, so compare split runs with
split runs.

`--replay N` runs no CA: it makes the repository calls one certificate's flow makes
(the account read with each request, or on PostgreSQL the nonce's statement that reads
it, with the handler's first reads sent ahead in its round trip where the revision does
so; newOrder's; the challenge's; finalize's claim; the issued certificate; the polls and
the download), N times over one store, and prints the CPU per certificate. Under
`valgrind --tool=callgrind` two N give the store's instructions per certificate by their
difference: a count that does not move with the machine's load. A revision without
`order_with_authorizations` reads the order and its authorizations as its CA does, in
two calls; one without `polled_order` reads an order's GET and poll as finalize reads it;
and one without `CertificateRepository.pem` downloads through `certificate`.

Side by side with no peer: it compares revisions of this CA with each other (run it on
each), not with Pebble; `bench/server.py` does that.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import fresh_database, raised_rate_limits
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

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Counts the time inside, on the loop's thread and outside any counted block."""
        if threading.current_thread() is not threading.main_thread():
            yield  # a worker thread's: not the loop's time
            return
        self.depth += 1
        w, c = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0:
                self.wall += time.perf_counter() - w
                self.cpu += time.thread_time() - c


def _timed(spent: Spent, method: Callable[..., AbstractContextManager[Any]]) -> Any:
    @contextmanager
    def wrapper(self: Any, *args: Any) -> Iterator[Any]:
        with spent.counting(), method(self, *args) as inner:
            yield inner

    return wrapper


def _timed_call(spent: Spent, method: Callable[..., Any]) -> Any:
    """A lone statement run without a block (`Repository._one`, `_all`, `_run`)."""

    def wrapper(*args: Any) -> Any:
        with spent.counting():
            return method(*args)

    return wrapper


@contextmanager
def timing_store() -> Iterator[Spent]:
    spent = Spent()
    names = [n for n in ("raw", "once", "tx") if hasattr(base.Database, n)]
    saved = {n: getattr(base.Database, n) for n in names}
    for n in names:
        setattr(base.Database, n, _timed(spent, saved[n]))
    lone = [n for n in ("_one", "_all", "_run") if hasattr(base.Repository, n)]
    saved_lone = {n: getattr(base.Repository, n) for n in lone}
    for n in lone:
        setattr(base.Repository, n, _timed_call(spent, saved_lone[n]))
    try:
        yield spent
    finally:
        for n in names:
            setattr(base.Database, n, saved[n])
        for n in lone:
            setattr(base.Repository, n, saved_lone[n])


@dataclass
class Split:
    """CPU on every thread: in the repositories' public methods (outermost calls), in the
    driver's calls within them, and in SQLAlchemy's pool checkouts and checkins."""

    repos: float = 0.0
    driver: float = 0.0
    pool: float = 0.0


class _Depth(threading.local):
    repos = 0


def _clocked(split: Split, field: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        c = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            setattr(split, field, getattr(split, field) + time.thread_time() - c)

    return call


class _TimedCursor:
    """The DBAPI cursor with its calls timed as the driver's."""

    def __init__(self, cur: Any, split: Split) -> None:
        self._cur = cur
        for name in ("execute", "executemany", "fetchone", "fetchall"):
            setattr(self, name, _clocked(split, "driver", getattr(cur, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


class _TimedDriverConnection:
    """The driver's connection: commit and rollback timed, its cursors timed."""

    def __init__(self, conn: Any, split: Split) -> None:
        vars(self).update(
            _conn=conn,
            _split=split,
            commit=_clocked(split, "driver", conn.commit),
            rollback=_clocked(split, "driver", conn.rollback),
        )

    def cursor(self) -> _TimedCursor:
        return _TimedCursor(self._conn.cursor(), self._split)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:  # autocommit
        setattr(self._conn, name, value)


class _TimedConnection(_TimedDriverConnection):
    """A pooled connection (the pool's proxy): the driver's calls timed as the driver's,
    its checkin (close) as the pool's."""

    def __init__(self, conn: Any, split: Split) -> None:
        super().__init__(conn, split)
        vars(self).update(
            close=_clocked(split, "pool", conn.close),
            dbapi_connection=_TimedDriverConnection(conn.dbapi_connection, split),
        )


def _repo_method(split: Split, depth: _Depth, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        depth.repos += 1
        c = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            depth.repos -= 1
            if depth.repos == 0:
                split.repos += time.thread_time() - c

    return call


@contextmanager
def splitting(enabled: bool) -> Iterator[Split]:
    """Time the repositories, the driver and the pool (see the module's docstring)."""
    split = Split()
    if not enabled:
        yield split
        return
    from acmekit.server.repos import accounts, buckets, certificates, orders

    depth = _Depth()
    saved: list[tuple[type, str, Any]] = []
    for cls in (
        accounts.AccountRepository,
        orders.OrderRepository,
        certificates.CertificateRepository,
        buckets.BucketRepository,
    ):
        for name, fn in list(vars(cls).items()):
            if inspect.isfunction(fn) and not name.startswith("_"):
                saved.append((cls, name, fn))
                setattr(cls, name, _repo_method(split, depth, fn))
    # PostgreSQL's statements go past the cursor (psycopg's C layer): the driver's too
    statements = getattr(base, "_PostgresStatements", None)
    if statements is not None:
        for name in ("send", "rows", "pipelined"):
            saved.append((statements, name, vars(statements)[name]))
            setattr(statements, name, _clocked(split, "driver", vars(statements)[name]))
    made = base.Database.__init__

    def init(self: Any, engine: Any) -> None:
        made(self, engine)
        checkout = _clocked(split, "pool", engine.raw_connection)
        self.engine = _EngineView(engine, lambda: _TimedConnection(checkout(), split))

    base.Database.__init__ = init  # type: ignore[method-assign]
    try:
        yield split
    finally:
        base.Database.__init__ = made  # type: ignore[method-assign]
        for cls, name, fn in saved:
            setattr(cls, name, fn)


class _EngineView:
    """The engine, with `raw_connection` handing out timed connections."""

    def __init__(self, engine: Any, raw_connection: Callable[[], Any]) -> None:
        self._engine = engine
        self.raw_connection = raw_connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


async def issued_cert_id(flow: Flow, name: str) -> str:
    """A certificate for `name`, issued; its ARI certID (RFC 9773 §4.1)."""
    from cryptography import x509

    from acmekit.protocol.ari import cert_id_of

    _, order = await flow.issue(name)
    pem = (await flow.get(order["certificate"])).body
    return str(cert_id_of(x509.load_pem_x509_certificates(pem)[0]))


async def measure(
    config: ServerConfig,
    responder: Http01Responder,
    certs: int,
    split_on: bool,
    renewals: str = "",
    read_challenge: bool = False,
) -> dict[str, float]:
    with counting() as count, timing_store() as spent, splitting(split_on) as split:
        assembly = assemble(config)
        try:
            flow = Flow(RawAcme(assembly.app), responder)
            assert (await flow.account()).status == 201
            await flow.one_certificate("warm.example.test")
            replaced: list[str | None] = [None] * certs
            if renewals:  # the certificates renewed, issued outside the count
                for i in range(certs):
                    cert_id = await issued_cert_id(flow, f"c{i}.example.test")
                    replaced[i] = cert_id if renewals == "ari" else None
            mark, wall0, cpu0 = count.mark(), spent.wall, spent.cpu
            trips0 = count.round_trips
            parts0 = (split.repos, split.driver, split.pool)
            p0 = time.process_time()
            for i in range(certs):
                if renewals:
                    await flow.one_renewal(f"c{i}.example.test", replaced[i])
                else:
                    await flow.one_certificate(f"c{i}.example.test", read_challenge)
            cpu = time.process_time() - p0
            statements, transactions = count.since(mark)
            trips = count.round_trips - trips0
            store_wall, store_cpu = spent.wall - wall0, spent.cpu - cpu0
            repos, driver, pool = (
                now - then
                for now, then in zip((split.repos, split.driver, split.pool), parts0, strict=True)
            )
        finally:
            await assembly.app.close()
            assembly.store.engine.dispose()
    return {
        "statements": statements / certs,
        "transactions": transactions / certs,
        "round_trips": trips / certs,  # PostgreSQL's; SQLite has none
        "cpu_ms": 1000 * cpu / certs,
        "store_wall_ms": 1000 * store_wall / certs,
        "store_cpu_ms": 1000 * store_cpu / certs,
        "repos_ms": 1000 * repos / certs,
        "driver_ms": 1000 * driver / certs,
        "pool_ms": 1000 * pool / certs,
    }


async def run(
    backends: list[str],
    certs: int,
    tmp: Path,
    split_on: bool,
    limits: RateLimits,
    renewals: str = "",
    read_challenge: bool = False,
) -> None:
    on = "on, none refusing this load" if limits.enabled else "off"
    what = f"renewals ({renewals})" if renewals else "certificates"
    if read_challenge and not renewals:
        what += " (the challenge read before it is answered)"
    print(f"{certs} {what}, one after another, in process; rate limits {on}, lint off")
    head = (
        f"{'backend':<12}{'stmts/cert':>11}{'tx/cert':>9}{'trips/cert':>11}{'CPU ms/cert':>13}"
        f"{'store wall ms':>15}{'store CPU ms':>14}"
    )
    if split_on:  # all threads: the repositories, the driver, SQLAlchemy's pool, the rest
        head += f"{'repos CPU ms':>14}{'driver ms':>11}{'pool ms':>9}{'ours ms':>9}"
    print(head)
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
                        rate_limits=limits,
                        lint=LintSettings(enabled=False),
                    )
                    r = await measure(config, responder, certs, split_on, renewals, read_challenge)
                line = (
                    f"{backend:<12}{r['statements']:>11.1f}{r['transactions']:>9.1f}"
                    f"{r['round_trips']:>11.1f}{r['cpu_ms']:>13.2f}{r['store_wall_ms']:>15.2f}{r['store_cpu_ms']:>14.2f}"
                )
                if split_on:
                    ours = r["repos_ms"] - r["driver_ms"] - r["pool_ms"]
                    line += (
                        f"{r['repos_ms']:>14.2f}{r['driver_ms']:>11.2f}{r['pool_ms']:>9.2f}"
                        f"{ours:>9.2f}"
                    )
                print(line)
    finally:
        await responder.stop()


def replay(url: str, certs: int) -> float:
    """The store's calls of `certs` certificates (see the module's docstring); CPU
    seconds per certificate."""
    from datetime import UTC, datetime, timedelta

    from acmekit.protocol.messages import (
        AccountStatus,
        AuthorizationStatus,
        ChallengeStatus,
        ChallengeType,
        Identifier,
        IdentifierType,
    )
    from acmekit.server import records
    from acmekit.server.store import Store

    store = Store.from_url(url)
    now = datetime.now(UTC)
    database_nonces = store.remote  # as the CA's default nonce scope is
    acct = store.accounts.add_account(
        records.AccountRecord(
            id="acct",
            thumbprint="t" * 43,
            jwk={"kty": "EC", "crv": "P-256", "x": "x" * 43, "y": "y" * 43},
            contact=("mailto:ops@example.test",),
            status=AccountStatus.VALID,
            created=now,
        )
    )
    orders, certificates = store.orders, store.certificates
    joined = getattr(orders, "order_with_authorizations", None)
    polled = getattr(orders, "polled_order", None)  # the order's GET and poll, as the CA's
    pem = getattr(certificates, "pem", None)  # the download as the CA makes it
    nonces = iter(range(10**9))

    # A revision with `Ahead` reads sends a handler's first reads with the account's;
    # on PostgreSQL only, where the CA makes them (SQLite's reads are made as before)
    aheads = hasattr(orders, "authorization_ahead") and store.remote

    def account(ahead: Any = ()) -> None:
        more = (ahead,) if aheads else ()
        if database_nonces:
            nonce = f"n{next(nonces)}-{now.timestamp()}"
            store.accounts.redeem_nonce_for(nonce, now, acct.id, *more)
        else:
            store.accounts.account(acct.id, *more)

    def read(repo: Any, name: str) -> Callable[..., Any]:
        """A handler's first read, looked up once: what makes its `Ahead` where the
        revision has them, else the read itself."""
        if aheads:
            return getattr(repo, f"{name}_ahead")
        if name == "order_with_authorizations":
            return order_and_authorizations
        if name == "polled_order":
            return polled_order
        return getattr(repo, name)

    def request(*reads: tuple[Callable[..., Any], tuple[Any, ...]]) -> None:
        """The request's account, and the handler's first reads (`read`, arguments):
        sent ahead with it where the revision can, else each after it. Loops, not
        comprehensions: the bench's own Python is counted with the store's."""
        if not aheads:
            account()
            for method, args in reads:
                method(*args)
            return
        made = []
        for method, args in reads:
            made.append(method(*args))
        account(made)
        for ahead in made:
            ahead.result()

    def order_and_authorizations(order_id: str, poll: bool = False) -> None:
        if poll and polled is not None:
            polled(order_id)
            return
        if joined is not None:
            joined(order_id)
            return
        order = orders.order(order_id)
        assert order is not None
        orders.authorizations(order.authz_ids)

    def polled_order(order_id: str) -> None:
        order_and_authorizations(order_id, poll=True)

    authorization = read(orders, "authorization")
    reusable = read(orders, "reusable_authorizations")
    challenge = read(orders, "challenge_and_authorization")
    order_read = read(orders, "order_with_authorizations")
    order_poll = read(orders, "polled_order")
    blocked = read(certificates, "key_blocked")

    def one(i: int) -> None:
        name = Identifier(IdentifierType.DNS, f"r{i}.example.test")
        authz_id, order_id, cert_id = f"a{i}", f"o{i}", f"c{i}"
        chs = tuple(
            records.ChallengeRecord(
                f"{authz_id}{t}", authz_id, t, f"tok{i}{t}", ChallengeStatus.PENDING
            )
            for t in (ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01)
        )
        authz = records.AuthorizationRecord(
            authz_id, acct.id, name, False, AuthorizationStatus.PENDING,
            now + timedelta(days=7), chs,
        )  # fmt: skip
        order = records.OrderRecord(
            order_id, acct.id, (name,), (authz_id,), now + timedelta(days=1), now
        )
        request((reusable, (acct.id, name, False, now)))  # newOrder
        orders.add_order(order, [authz])
        request((authorization, (authz_id,)))  # the authorization
        http = chs[0].id
        request((challenge, (http,)))  # the challenge
        orders.start_challenge(http, now, "https://ca.example.test/acct/acct")
        evidence = records.ValidationEvidence()
        orders.finish_challenge(http, now, None, now + timedelta(days=30), evidence)
        request((authorization, (authz_id,)))  # the poll
        request((order_poll, (order_id,)))  # the order, before finalize
        # finalize (the order and the CSR key's blocklist), its claim and the certificate
        request((order_read, (order_id,)), (blocked, ("ab" * 32,)))
        rec = records.CertificateRecord(
            cert_id, f"{i:x}", order_id, acct.id, None, (name,),
            now, now + timedelta(days=90), now,
        )  # fmt: skip
        # rate limits off, as the bench runs the CA: the claim alone, in its own transaction
        assert orders.claim_finalize(order_id, b"csr" * 100, now, rec)
        assert certificates.record_issued(cert_id, order_id, "PEM" * 300)
        request((order_poll, (order_id,)))  # the order's poll
        account()  # the download
        if pem is not None:
            pem(cert_id)
        else:
            certificates.certificate(cert_id)

    one(-1)  # first-use costs settle
    start = time.process_time()
    for i in range(certs):
        one(i)
    spent = time.process_time() - start
    store.engine.dispose()
    return spent / certs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--split", action="store_true", help="time repositories, driver, pool")
    parser.add_argument("--replay", type=int, default=0, help="the store's calls alone, N times")
    parser.add_argument(
        "--limits", action="store_true", help="rate limits on, raised never to refuse the load"
    )
    parser.add_argument(
        "--renewals",
        choices=("plain", "ari"),
        default="",
        help="each a second order for a name already authorized (ari: with `replaces`)",
    )
    parser.add_argument(
        "--read-challenge", action="store_true", help="the challenge read before it is answered"
    )
    args = parser.parse_args()
    if args.replay:
        with tempfile.TemporaryDirectory(prefix="acmekit-store-bench-") as tmp:
            for backend in args.backends.split(","):
                with fresh_database(backend, Path(tmp), f"{backend}.db") as url:
                    cpu = replay(url, args.replay)
                print(
                    f"{backend}: {args.replay} certificates replayed, {1e6 * cpu:.0f} µs CPU each"
                )
        return
    with tempfile.TemporaryDirectory(prefix="acmekit-store-bench-") as tmp:
        limits = raised_rate_limits() if args.limits else RateLimits(enabled=False)
        backends = args.backends.split(",")
        asyncio.run(
            run(
                backends,
                args.certs,
                Path(tmp),
                args.split,
                limits,
                args.renewals,
                args.read_challenge,
            )
        )


if __name__ == "__main__":
    main()
