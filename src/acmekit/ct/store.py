"""The log's storage: entries, complete-subtree hashes, the signed tree head, the lease.

Synchronous SQLAlchemy Core; the HTTP handlers call it in a worker thread, and the
submissions' batches are written on a thread of the store's own (`_Writer`). Any process
may add entries (each gets its leaf index, `seq`, as it is stored) and read; sequencing
happens in one transaction that moves the tree from its size N to N + k (entries N ..
N + k - 1 placed, new complete subtrees their hashes, the tree row its new STH) under
the condition that the tree row still says N, so two sequencers at once cannot both
succeed, whatever the lease says.

A proof or a root for any size touches O(log n) rows of `ct_nodes` (one query), and
sequencing a batch reads the old tree's right edge (one query), so neither time nor
memory grows with the tree beyond the logarithm.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from acmekit import migrate
from acmekit.ct import merkle
from acmekit.ct.readdeadline import BoundedReads
from acmekit.ct.schema import entries, issuers, leases, nodes, tree
from acmekit.database import UNAVAILABLE, create_engine, durable_begin
from acmekit.protocol.ct import DigitallySigned, SignedTreeHead, TreeHead

SEQUENCER_LEASE = "sequencer"
# PostgreSQL: how long one of the readers' statements may run (a wait for a lock
# included) before the server cancels it; the reader's request gets a 503. Under the
# listener's 10 s for requests in flight at shutdown, so a stuck read is answered then.
READ_TIMEOUT_MS = 5_000
# PostgreSQL: seconds a read (checkout, statements, return) may take before the client
# cuts its connection (`acmekit.ct.readdeadline`): past the server's own timeout, so
# only a connection whose server no longer answers is cut; still under the 10 s.
READ_DEADLINE = READ_TIMEOUT_MS / 1000 + 1
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class StoredEntry:
    """What the log keeps of one submission."""

    identity: bytes
    leaf_hash: bytes
    timestamp: int
    leaf_input: bytes
    extra_data: bytes
    sct_signature: bytes
    seq: int | None = None


@dataclass(frozen=True)
class Pending:
    """A checked submission waiting for its leaf index: `seal(index)` signs its SCT (with
    the `leaf_index` extension) and builds the row stored for it."""

    identity: bytes
    seal: Callable[[int], StoredEntry]
    chain: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Leaf:
    seq: int
    leaf_input: bytes
    extra_data: bytes


SignHead = Callable[[TreeHead], SignedTreeHead]


class CtStore:
    def __init__(self, engine: Engine, before_commit: Callable[[], None] | None = None) -> None:
        """`before_commit`: see `_Writer` (None but in drills and tests)."""
        self.engine = engine
        self._reads = _read_engine(engine)
        self._known_issuers: set[bytes] = set()  # stored already: no query for them
        # The chains (as the Pending entries hold them) whose issuers are stored: most
        # submissions bring the very tuple another did, hashed once.
        self._known_chains: set[tuple[bytes, ...]] = set()
        self._writer = _Writer(engine, before_commit)
        self._sql = _EntrySql("?" if engine.dialect.paramstyle == "qmark" else "%s")

    @classmethod
    def from_url(cls, url: str, before_commit: Callable[[], None] | None = None) -> CtStore:
        engine = create_engine(url)
        migrate.upgrade(engine, migrate.CT)
        return cls(engine, before_commit)

    def end_stalled_sessions(self, after_ms: int) -> None:
        """PostgreSQL: the server ends any session of this store that sits idle inside a
        transaction for `after_ms`, releasing its locks. A process that stops there (a
        host gone without closing its connections, a frozen process: the server sees no
        end of the connection for as long as TCP keepalive takes, hours by default)
        would otherwise keep the index lock, which every process's submissions wait for,
        or the rows a sequencing pass writes, which the next holder of the lease waits
        for: the whole log would stop with it. The log passes its lease time, so a
        takeover still comes within the MMD. Made before any connection is used for
        the log; the migration's pooled ones are dropped."""
        if self.engine.dialect.name != "postgresql":
            return
        setting = f"SET idle_in_transaction_session_timeout = {int(after_ms)}"

        @sa.event.listens_for(self.engine, "connect")
        def _bounded(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute(setting)
            dbapi_conn.commit()  # a session setting, kept past the pool's rollbacks

        self.engine.dispose()

    def close(self) -> None:
        self._writer.close()
        self.engine.dispose()
        self._reads.dispose()

    # ----- submissions -----

    def find(self, identity: bytes) -> StoredEntry | None:
        with self._reads.connect() as conn:
            row = conn.execute(sa.select(entries).where(entries.c.identity == identity)).first()
        return None if row is None else _stored(row)

    def add_many(self, items: Sequence[Pending]) -> list[StoredEntry]:
        """`add_many_async` from any thread but the writer's: blocks until durable."""
        return self._writer.submit(self._add_many, items).result()

    async def add_many_async(self, items: Sequence[Pending]) -> list[StoredEntry]:
        """Store several submissions in one transaction (group commit), each at the next
        leaf index: for each, the entry now stored under its identity, which is the one
        it seals unless an earlier submission (in this batch, before it, or in any
        process) has that identity. Durable when this returns: the caller answers only
        then (on SQLite the writer's commits sync the WAL, `_Writer`), and an SCT for an
        entry a power loss then dropped would be the log's fatal error (RFC 6962 §3).

        Written on the store's writer thread, the only one that uses the writer's
        connection; the event loop awaiting it serves other requests meanwhile, the
        batch's sync included (docs/decisions.md). Raises `WriterClosed` once the store
        is closed: a batch not yet begun then is never written, and its submitters get
        an error, not an SCT.

        Indices are handed out under the log's write lock (SQLite's `BEGIN IMMEDIATE`,
        a PostgreSQL transaction-scoped advisory lock), so that every process's batches
        take consecutive runs and a committed index never has a gap below it; the
        sequencer then places entries in index order (static-ct-api: the SCT carries
        the index, so it is fixed before the SCT exists)."""
        return await asyncio.wrap_future(self._writer.submit(self._add_many, items))

    def _add_many(self, items: Sequence[Pending]) -> list[StoredEntry]:
        """`add_many_async`'s work, on the writer thread."""
        if not items:
            return []
        chains = {p.chain for p in items}
        # A new chain's issuers first: the batch's commit then makes them durable with
        # it (on SQLite its WAL sync covers every earlier commit). Stored after it, at
        # NORMAL, they could be lost with the power while the entry stays, answered,
        # whose chain static-ct-api serves from them (`issuer/<sha256>`).
        for chain in chains - self._known_chains:
            self._remember_issuers(chain)
        with self._writer.transaction() as cur:
            # The driver's own cursor on this path: SQLAlchemy's statement building and
            # result processing cost more than the database does for a batch
            # (docs/decisions.md).
            wanted = list({p.identity for p in items})
            stored: dict[bytes, StoredEntry] = {}
            for i in range(0, len(wanted), 500):  # bound the IN list
                part = wanted[i : i + 500]
                cur.execute(self._sql.select_in(len(part)), tuple(part))
                stored.update({bytes(r[0]): _stored_tuple(r) for r in cur.fetchall()})
            cur.execute(_MAX_SEQ)
            top = cur.fetchone()[0]
            nxt = 0 if top is None else int(top) + 1
            out: list[StoredEntry] = []
            fresh: list[tuple[object, ...]] = []
            for pending in items:
                found = stored.get(pending.identity)
                if found is None:
                    found = stored[pending.identity] = pending.seal(nxt)
                    nxt += 1
                    fresh.append(_entry_row(found))
                out.append(found)
            if fresh and self._writer.sqlite:
                cur.executemany(self._sql.insert, fresh)
            elif fresh:
                # One multi-row statement, not executemany: psycopg pipelines that, and
                # after a pipeline PostgreSQL (15) leaves the idle-in-transaction timeout
                # unarmed until the next statement, so a process stopped between it
                # and COMMIT would hold the index lock for good (end_stalled_sessions).
                # In parts: PostgreSQL takes at most 65,535 parameters a statement, and
                # a larger batch (9,363 entries of 7) failed whole.
                for i in range(0, len(fresh), 1000):
                    rows = fresh[i : i + 1000]
                    cur.execute(self._sql.entry_rows(len(rows)), [v for r in rows for v in r])
        if len(self._known_chains) > 1_000:
            self._known_chains.clear()
        self._known_chains |= chains
        return out

    def _remember_issuers(self, chain: Iterable[bytes]) -> None:
        keyed = {hashlib.sha256(der).digest(): der for der in chain}
        keyed = {h: d for h, d in keyed.items() if h not in self._known_issuers}
        if not keyed:
            return
        with self.engine.begin() as conn:
            known = set(
                conn.execute(
                    sa.select(issuers.c.sha256).where(issuers.c.sha256.in_(list(keyed)))
                ).scalars()
            )
            fresh = [{"sha256": h, "der": d} for h, d in keyed.items() if h not in known]
            if fresh:
                # One statement (not executemany): see add_many. A certificate another
                # process stored meanwhile is skipped, the others still stored: a
                # conflict failing the statement whole lost them (two intermediates
                # under one root, the root added to both chains).
                insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
                conn.execute(
                    insert(issuers)
                    .values(fresh)
                    .on_conflict_do_nothing(index_elements=[issuers.c.sha256])
                )
        if len(self._known_issuers) > 10_000:
            self._known_issuers.clear()
        self._known_issuers.update(keyed)

    def issuer(self, sha256: bytes) -> bytes | None:
        with self._reads.connect() as conn:
            found = conn.execute(
                sa.select(issuers.c.der).where(issuers.c.sha256 == sha256)
            ).scalar()
        return bytes(found) if found is not None else None

    # ----- the tree head -----

    def sth(self) -> SignedTreeHead | None:
        with self._reads.connect() as conn:
            return _sth(conn)

    def init_tree(self, sign: SignHead, now_ms: int) -> None:
        """The empty tree's STH, once (§3.5: a log signs a head for size 0 too); on disk
        when this returns, as every head (`sequence`)."""
        try:
            with durable_begin(self.engine) as conn:
                _lock_indices(conn)
                if _sth(conn) is None:
                    sth = sign(TreeHead(0, now_ms, merkle.EMPTY_ROOT))
                    conn.execute(tree.insert().values(id=1, **_sth_row(sth)))
                _index_unsequenced(conn)
        except sa.exc.IntegrityError:
            pass  # another process starting at the same time made it

    def sequence(self, sign: SignHead, now_ms: int, batch: int, refresh_ms: int) -> int:
        """Place up to `batch` pending entries in the tree and sign the new head; with
        none pending, sign a fresh head for the same tree once the last is `refresh_ms`
        old. How many entries were placed. The new head is on disk when this returns (on
        SQLite the WAL synced at its commit): a head served and then lost would let the
        log sign another tree of the same size, a split view (RFC 6962 §3.5)."""
        with durable_begin(self.engine) as conn:
            _begin_write(conn)
            old = _sth(conn)
            if old is None:
                raise RuntimeError("the tree has no head yet")
            size = old.head.tree_size
            # Indices were given at submission; place the next run of them, in order.
            pending = conn.execute(
                sa.select(entries.c.seq, entries.c.leaf_hash, entries.c.timestamp)
                .where(entries.c.seq >= size)
                .order_by(entries.c.seq)
                .limit(batch)
            ).all()
            if pending and pending[-1].seq != size + len(pending) - 1:
                raise RuntimeError(f"leaf indices from {size} have a gap")
            if not pending and now_ms - old.head.timestamp < refresh_ms:
                return 0
            edge = _nodes(conn, merkle.right_edge(size))
            new = merkle.new_nodes(size, [bytes(r.leaf_hash) for r in pending], edge)
            new_size = size + len(pending)
            root = merkle.fold([new.get(n) or edge[n] for n in merkle.decompose(0, new_size)])
            # Never older than an SCT placed (§3.5: "at least as recent as the most
            # recent SCT timestamp in the tree"): `now_ms` was read before this
            # transaction, and a batch committed since (another writer got the lock
            # first) has SCTs stamped after it. A larger tree's head is more recent than
            # the last (§3.5), though that was signed by a clock ahead of this one.
            last = old.head.timestamp + (1 if pending else 0)
            stamp = max(now_ms, last, *(r.timestamp for r in pending))
            sth = sign(TreeHead(new_size, stamp, root))
            if pending:
                # driver SQL: up to a few thousand rows a batch, no per-row dicts
                self._insert_nodes(conn, [(lv, ix, h) for (lv, ix), h in new.items()])
            done = conn.execute(
                tree.update().where(tree.c.id == 1, tree.c.size == size).values(**_sth_row(sth))
            )
            if done.rowcount != 1:
                raise RuntimeError("another sequencer moved the tree")
            return len(pending)

    def _insert_nodes(self, conn: Connection, rows: list[tuple[int, int, bytes]]) -> None:
        """SQLite: executemany. PostgreSQL: multi-row statements, as in add_many, so that
        a sequencer stopped before its COMMIT does not keep the rows the next one
        writes for good (end_stalled_sessions)."""
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(self._sql.insert_nodes, rows)
            return
        for i in range(0, len(rows), 1000):  # 3 parameters a row; PostgreSQL takes 65,535
            part = rows[i : i + 1000]
            flat = tuple(v for r in part for v in r)
            conn.exec_driver_sql(self._sql.node_rows(len(part)), flat)

    def take_lease(self, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Hold (or keep) the sequencer lease: free, expired, or already ours."""
        with self.engine.begin() as conn:
            _begin_write(conn)
            done = conn.execute(
                leases.update()
                .where(
                    leases.c.name == SEQUENCER_LEASE,
                    sa.or_(leases.c.holder == holder, leases.c.until < now_ms),
                )
                .values(holder=holder, until=now_ms + ttl_ms)
            )
            if done.rowcount == 1:
                return True
            exists = conn.execute(
                sa.select(leases.c.name).where(leases.c.name == SEQUENCER_LEASE)
            ).first()
            if exists is not None:
                return False
            try:
                with conn.begin_nested():
                    conn.execute(
                        leases.insert().values(
                            name=SEQUENCER_LEASE, holder=holder, until=now_ms + ttl_ms
                        )
                    )
            except sa.exc.IntegrityError:
                return False
            return True

    def release_lease(self, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                leases.delete().where(leases.c.name == SEQUENCER_LEASE, leases.c.holder == holder)
            )

    def lease_holder(self) -> str | None:
        with self._reads.connect() as conn:
            return conn.execute(
                sa.select(leases.c.holder).where(leases.c.name == SEQUENCER_LEASE)
            ).scalar()

    # ----- reads -----

    def nodes(self, wanted: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
        with self._reads.connect() as conn:
            return _nodes(conn, wanted)

    def range_hashes(self, ranges: Sequence[merkle.Range]) -> list[bytes]:
        return merkle.Nodes(self.nodes(merkle.nodes_for(ranges))).hashes(ranges)

    def root(self, size: int) -> bytes:
        return merkle.root_from(self.nodes, size)

    def leaf_index(self, leaf_hash: bytes, size: int) -> int | None:
        with self._reads.connect() as conn:
            return conn.execute(
                sa.select(entries.c.seq).where(
                    entries.c.leaf_hash == leaf_hash, entries.c.seq < size
                )
            ).scalar()

    def leaves(self, start: int, end: int) -> list[Leaf]:
        """Sequenced entries [start, end]: both ends inclusive, as get-entries has them."""
        with self._reads.connect() as conn:
            rows = conn.execute(
                sa.select(entries.c.seq, entries.c.leaf_input, entries.c.extra_data)
                .where(entries.c.seq >= start, entries.c.seq <= end)
                .order_by(entries.c.seq)
            ).all()
        return [Leaf(r.seq, bytes(r.leaf_input), bytes(r.extra_data)) for r in rows]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """Leaf hashes [start, end) (the tiles' level 0)."""
        found = self.nodes((0, i) for i in range(start, end))
        return [found[(0, i)] for i in range(start, end)]


_ENTRY_COLUMNS = (
    "identity",
    "leaf_hash",
    "timestamp",
    "leaf_input",
    "extra_data",
    "sct_signature",
    "seq",
)
_MAX_SEQ = "SELECT max(seq) FROM ct_entries"


class _EntrySql:
    """The submission path's statements, in the driver's own parameter style."""

    def __init__(self, mark: str) -> None:
        self.mark = mark
        columns = ", ".join(_ENTRY_COLUMNS)
        marks = ", ".join([mark] * len(_ENTRY_COLUMNS))
        self.insert = f"INSERT INTO ct_entries ({columns}) VALUES ({marks})"
        self.insert_nodes = (
            f"INSERT INTO ct_nodes (level, idx, hash) VALUES ({mark}, {mark}, {mark})"
        )
        self._select = f"SELECT {columns} FROM ct_entries WHERE identity IN "

    def entry_rows(self, n: int) -> str:
        """INSERT of `n` entries in one statement."""
        row = "(" + ", ".join([self.mark] * len(_ENTRY_COLUMNS)) + ")"
        return self.insert.split(" VALUES ")[0] + " VALUES " + ", ".join([row] * n)

    def node_rows(self, n: int) -> str:
        """INSERT of `n` nodes in one statement."""
        row = f"({self.mark}, {self.mark}, {self.mark})"
        return "INSERT INTO ct_nodes (level, idx, hash) VALUES " + ", ".join([row] * n)

    def select_in(self, n: int) -> str:
        return self._select + "(" + ", ".join([self.mark] * n) + ")"


def _entry_row(e: StoredEntry) -> tuple[object, ...]:
    """The row of `_ENTRY_COLUMNS` for an entry."""
    return (
        e.identity,
        e.leaf_hash,
        e.timestamp,
        e.leaf_input,
        e.extra_data,
        e.sct_signature,
        e.seq,
    )


class WriterClosed(Exception):
    """The store is closed: the batch was not written (nor will be)."""


class _Writer:
    """The submission path's writer: a thread of its own, and one driver connection kept
    for its transactions, made, used and closed on that thread only (neither SQLite's
    nor psycopg's connection is shared with another thread). Batches are written one at
    a time, in the order they were handed over; no pool checkout, ping or reset per
    batch. Each transaction holds the log's index lock (SQLite's `BEGIN IMMEDIATE`, the
    PostgreSQL advisory lock) to its commit. A transaction that fails drops the
    connection (it may be the one the database closed); the next takes a fresh one from
    the pool.

    `before_commit`, if given, is called on the writer thread inside each transaction,
    its rows written and its lock held, just before the commit: a drill or a test holds
    a batch's commit there."""

    def __init__(self, engine: Engine, before_commit: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self._before_commit = before_commit
        self._conn: Any = None  # SQLAlchemy's pooled DBAPI connection proxy
        # One thread: the batches' order is the order of the leaf indices they take in
        # this process, and the kept connection never meets a second thread. A daemon
        # (not an executor's, which the interpreter joins at exit): a writer stuck in
        # the database must not keep a stopping process alive (`close`).
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="ct-writer", daemon=True)
        self._thread.start()
        self._closing = threading.Lock()
        self._closed = False
        self.sqlite = sqlite = engine.dialect.name == "sqlite"
        self._lock_sql = (
            "BEGIN IMMEDIATE" if sqlite else f"SELECT pg_advisory_xact_lock({_INDEX_LOCK})"
        )
        # A PostgreSQL connection kept idle may have been closed by the server meanwhile
        # (a restart, an idle timeout), which the pool's ping would have caught: it is
        # found at the transaction's first statement, before anything is written, and
        # replaced once. SQLite's only failure there is a lock held past the busy timeout.
        self._retry = not sqlite

    def submit(self, write: Callable[[T], R], arg: T) -> Future[R]:
        """`write(arg)` on the writer thread, after the writes handed over before it."""
        with self._closing:
            if self._closed:
                raise WriterClosed("the log's store is closed")
            done: Future[R] = Future()
            self._jobs.put(functools.partial(_run_into, done, write, arg))
            return done

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A transaction holding the index lock (on the writer thread)."""
        conn, cur = self._begin()
        try:
            yield cur
            if self._before_commit is not None:
                self._before_commit()
            cur.close()
            conn.commit()
        except BaseException:
            self._drop()
            raise

    def _begin(self) -> tuple[Any, Any]:
        """The connection and a cursor in a transaction holding the index lock."""
        while True:
            kept = self._conn is not None
            if not kept:
                self._conn = self.engine.raw_connection()
            conn = self._conn
            try:
                cur = conn.cursor()
                if self.sqlite and not kept:
                    # Checkpoints are left to the log's other connections (the
                    # sequencer's and the lease's): a submitter's SCT does not wait for
                    # one.
                    cur.execute("PRAGMA wal_autocheckpoint=0")
                    # Every commit here is a batch of submissions about to be answered
                    # with SCTs: each syncs the WAL (`add_many_async`). Only this
                    # connection, which commits nothing else, is kept at FULL.
                    cur.execute("PRAGMA synchronous=FULL")
                cur.execute(self._lock_sql)
            except UNAVAILABLE:
                self._drop()
                if kept and self._retry:
                    continue
                raise
            except BaseException:
                self._drop()
                raise
            return conn, cur

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.sqlite:
            # Rolled back first: SQLite closes a connection whose statements are not all
            # finalized (Python's executemany leaves its own so, and the failed batch's
            # cursor lives on in the traceback its submitters get) only once they are,
            # and until then its transaction, the write lock with it, stays open for
            # every writer. (Local; on PostgreSQL closing the socket ends it.)
            with contextlib.suppress(Exception):
                conn.rollback()
        with contextlib.suppress(Exception):
            conn.invalidate()  # closed; never reused

    def close(self) -> None:
        """Write what was handed over (a batch in flight is finished, so its submitters
        are answered from a committed transaction), then close the connection on its
        thread; nothing is written after."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(self._close_connection)
            self._jobs.put(None)
        self._thread.join()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _run_into(done: Future[R], write: Callable[[T], R], arg: T) -> None:
    """`write(arg)`, its result or error into `done` (unless its waiter gave up)."""
    if not done.set_running_or_notify_cancel():
        return
    try:
        result = write(arg)
    except BaseException as exc:
        done.set_exception(exc)
    else:
        done.set_result(result)


def _stored_tuple(r: Sequence[Any]) -> StoredEntry:
    """A row of `_ENTRY_COLUMNS` as the driver gives it (a blob or bytea as bytes or a
    memoryview)."""
    return StoredEntry(
        bytes(r[0]), bytes(r[1]), int(r[2]), bytes(r[3]), bytes(r[4]), bytes(r[5]), r[6]
    )


_INDEX_LOCK = 0x6374_6C6F_6701  # the PostgreSQL advisory lock that hands out leaf indices


def _lock_indices(conn: Connection) -> None:
    """The write lock under which leaf indices are handed out, held to commit."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_INDEX_LOCK)))


def _index_unsequenced(conn: Connection) -> None:
    """Entries a log of an earlier version accepted without an index (it sequenced
    after answering) get the next ones, in the order they came, once at start."""
    ids = list(
        conn.execute(
            sa.select(entries.c.id).where(entries.c.seq.is_(None)).order_by(entries.c.id)
        ).scalars()
    )
    if not ids:
        return
    nxt = _next_index(conn)
    conn.execute(
        entries.update()
        .where(entries.c.id == sa.bindparam("b_id"))
        .values(seq=sa.bindparam("b_seq")),
        [{"b_id": i, "b_seq": nxt + n} for n, i in enumerate(ids)],
    )


def _next_index(conn: Connection) -> int:
    """The next leaf index: one past the highest given (read from the unique index)."""
    top = conn.execute(sa.select(sa.func.max(entries.c.seq))).scalar()
    return 0 if top is None else int(top) + 1


def _read_engine(engine: Engine) -> Engine | BoundedReads:
    """The engine the readers' statements (the HTTP reads, the head's refresh) run on.
    PostgreSQL: one of its own whose sessions cancel a statement after READ_TIMEOUT_MS,
    so that a read waiting behind a lock (a migration's, another session's `LOCK TABLE`)
    or a query gone slow ends in a 503 and frees its read thread and connection: the
    log's read threads are few, and each stuck read held one until the lock was let go.
    The writer, the sequencer and the lease keep the first engine and wait as before.
    A server that no longer answers at all is met by the client's READ_DEADLINE on each
    read, and a new connection's handshake by `connect_timeout`.
    SQLite: the same engine (a WAL reader does not wait for the writer)."""
    if engine.dialect.name != "postgresql":
        return engine
    url = engine.url
    if "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(int(READ_DEADLINE))})
    reads = create_engine(url.render_as_string(hide_password=False), pre_ping=False)
    bounded = BoundedReads(reads, READ_DEADLINE)
    setting = f"SET statement_timeout = {READ_TIMEOUT_MS}"

    @sa.event.listens_for(reads, "connect")
    def _bounded(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(setting)
        dbapi_conn.commit()  # a session setting, kept past the pool's rollbacks

    return bounded


def _stored(r: sa.Row[Any]) -> StoredEntry:
    return StoredEntry(
        bytes(r.identity),
        bytes(r.leaf_hash),
        r.timestamp,
        bytes(r.leaf_input),
        bytes(r.extra_data),
        bytes(r.sct_signature),
        r.seq,
    )


def _begin_write(conn: Connection) -> None:
    """SQLite: take the write lock up front, so that a read-then-write transaction waits
    for another writer instead of failing when its snapshot turns stale."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sth(conn: Connection) -> SignedTreeHead | None:
    row = conn.execute(sa.select(tree).where(tree.c.id == 1)).first()
    if row is None:
        return None
    head = TreeHead(row.size, row.timestamp, bytes(row.root_hash))
    return SignedTreeHead(head, DigitallySigned.decode(bytes(row.signature)))


def _sth_row(sth: SignedTreeHead) -> dict[str, object]:
    return {
        "size": sth.head.tree_size,
        "timestamp": sth.head.timestamp,
        "root_hash": sth.head.root_hash,
        "signature": sth.signature.encode(),
    }


def _nodes(conn: Connection, wanted: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """The hashes of `wanted` nodes, in one query: per level an IN list on the primary
    key (a row-value IN is not answered from the index by SQLite)."""
    by_level: dict[int, list[int]] = {}
    for level, idx in set(wanted):
        by_level.setdefault(level, []).append(idx)
    out: dict[merkle.Node, bytes] = {}
    levels = sorted(by_level)
    for i in range(0, len(levels), 16):  # bound the size of one statement
        clauses = [
            sa.and_(nodes.c.level == lv, nodes.c.idx.in_(by_level[lv])) for lv in levels[i : i + 16]
        ]
        rows = conn.execute(
            sa.select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(sa.or_(*clauses))
        )
        out.update({(r.level, r.idx): bytes(r.hash) for r in rows})
    missing = [(lv, ix) for lv in levels for ix in by_level[lv] if (lv, ix) not in out]
    if missing:
        raise LookupError(f"tree nodes missing: {missing[:3]}")
    return out
