"""What the CA's repositories share: the connection and cursor handling, and row helpers.

- Every state change that two processes could race on is one conditional UPDATE whose
  row count says who won (finalize claims, nonce redemption, revocation), so several
  server processes can share one PostgreSQL database.
- Times are stored as integer microseconds since the epoch (UTC): the same on both
  databases, cheap to index and compare, never a naive datetime.
- The statements of the request path (nonces, accounts, orders, authorizations,
  challenges, issuance, rate-limit buckets) are written once as SQL text and run on the
  driver's own cursor over a pooled connection (`Database.raw`): the same statements
  SQLAlchemy would send, without building and caching an expression per call, which cost
  about five times the statement itself on SQLite (docs/decisions.md). The rarely used
  statements stay in SQLAlchemy Core (`Database.tx`).
- A statement that is atomic on its own runs through `Database.once`: on PostgreSQL in
  autocommit, one round trip where a transaction costs three (BEGIN, the statement,
  COMMIT). Work of several statements that must commit together runs through `raw`, and
  a method that can join a caller's transaction takes it as `within` (finalize: the
  issuance limits, the claim and the serial's reservation in one).
- On PostgreSQL those statements go through psycopg's C layer, not its cursor's Python
  (`_PostgresStatements`): the same messages to the server, prepared as psycopg would.
"""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime
from enum import Enum
from typing import Any, Generic, NoReturn, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from acmekit.database import UNAVAILABLE, durable_begin, from_us, synced
from acmekit.protocol.messages import Identifier, IdentifierType

E = TypeVar("E", bound=Enum)


def row_type(table: sa.Table) -> Any:
    """A named tuple of the table's columns, in order: what a raw SELECT of `cols` yields."""
    return namedtuple(f"{table.name}_row", [c.name for c in table.columns])


def cols(table: sa.Table, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + c.name for c in table.columns)


class RowJson:
    """A row read as one JSON text, built by the database: `SELECT json_array(a, b, ...)`
    where `SELECT a, b, ...` was. The driver's per-column work (on SQLite each column is
    a call that gives up and takes back the GIL, a type check, a string decoded, and a
    column name and a 7-tuple for the cursor's description) cost far more than the
    database's JSON: a read of one row of 36 columns took 107,000 instructions, the same
    row as one JSON text 58,000 (docs/decisions.md). The text is also the cheapest key
    for the decoded-record caches: one string hashed and compared, not a tuple of them.

    Values keep their JSON types: text as strings (the JSON-text columns too, decoded by
    their readers), integers as numbers, NULL as null; a boolean is 0/1 on SQLite and
    true/false on PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"

    def array(self, exprs: Sequence[str]) -> str:
        """The JSON array of `exprs`, as a JSON value (to nest)."""
        fn = "json_array" if self.sqlite else "json_build_array"
        return f"{fn}({', '.join(exprs)})"

    def text(self, exprs: Sequence[str]) -> str:
        """The JSON array of `exprs` as text: what a statement returns."""
        found = self.array(exprs)
        return found if self.sqlite else f"CAST({found} AS text)"

    def rows(self, exprs: Sequence[str], tail: str) -> str:
        """A scalar subquery: the JSON array of `exprs` of each row `FROM ... WHERE ...`
        (`tail`) in no set order, `[]` for none. Nested, a JSON array; or a JSON string
        of one where the database loses a subquery's JSON type (SQLite may: json() would
        keep it, but parses the text again on every read), so a reader takes both."""
        if self.sqlite:
            return f"(SELECT json_group_array({self.array(exprs)}) {tail})"
        return f"(SELECT COALESCE(json_agg({self.array(exprs)}), '[]') {tail})"


def col_list(table: sa.Table, alias: str = "", skip: Sequence[str] = ()) -> list[str]:
    """The table's columns in order, as `alias.name` (NULL in place of those `skip`s)."""
    prefix = f"{alias}." if alias else ""
    return ["NULL" if c.name in skip else prefix + c.name for c in table.columns]


def members(enum: type[E]) -> Callable[[str], E]:
    """`enum(value)` as a dict lookup: rows are read on every request, and Enum's own
    call costs several times a lookup (a bad value still raises)."""
    by_value = {member.value: member for member in enum}

    def member(value: str) -> E:
        found = by_value.get(value)
        return enum(value) if found is None else found

    return member


identifier_type = members(IdentifierType)


def marks(n: int) -> str:
    return ", ".join("?" * n)


class Texts(dict[Any, Any]):
    """Statement texts of one shape each (`make(key)`: the key a count of placeholders,
    or the optional parts a statement has), each made once: a text built per call is a
    new string that the driver's statement cache hashes and compares in full on every
    run, where a kept one's hash is cached. Keys come from bounded shapes (an order's
    identifiers are bounded), so the dict stays small. Some keys are not: the joined
    inserts of an order follow its identifiers' kinds (3**n sequences of challenge
    counts, chosen by the client), so no more than KEPT texts are kept; past that a text
    is made per call, as it was before."""

    KEPT = 256

    def __init__(self, make: Callable[[Any], Any], kept: int = KEPT) -> None:
        super().__init__()
        self._make = make
        self._kept = kept

    def __missing__(self, key: Any) -> Any:
        text = self._make(key)
        if len(self) < self._kept:
            self[key] = text
        return text


def opt_time(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # json's C scanner


def loads(text: str) -> Any:
    """`json.loads` for the texts the store reads (written by it, or made by its database:
    no space around them): json's C scanner called directly, without the Python layers
    of `json.loads` (two regular-expression matches and three calls a text, more than
    the scan of a short text). Any other text takes `json.loads`, and fails as it does."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def ids_json(ids: Sequence[Identifier]) -> str:
    return json.dumps([i.to_json() for i in ids])


def ids_load(text: str) -> tuple[Identifier, ...]:
    return tuple(Identifier(identifier_type(d["type"]), d["value"]) for d in loads(text))


def json_or_none(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(loads(text))


class Cursor:
    """A DBAPI cursor that takes SQL written with ? placeholders (the driver's own style
    on SQLite; `_FormatCursor` translates for PostgreSQL)."""

    __slots__ = ("_cur",)

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def run(self, text: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        cur = self._cur
        cur.execute(text, params)
        return int(cur.rowcount)

    def many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(text, rows)

    def one(self, text: str, params: Sequence[Any] = ()) -> Any:
        cur = self._cur
        cur.execute(text, params)
        return cur.fetchone()

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self._cur
        cur.execute(text, params)
        return list(cur.fetchall())

    def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Each statement's rows (`all`), one after another; on PostgreSQL in one round
        trip (`_FormatCursor.batch`). Each runs whatever the others' answers."""
        found = []
        for text, params in statements:
            found.append(self.all(text, params))
        return found


FORMAT_TEXTS_KEPT = 4096  # texts translated for PostgreSQL and kept, per Database


def numbered(text: str) -> bytes:
    """A text with `?` placeholders in PostgreSQL's own form, `$1, $2, ...` in order, as
    the server takes it (psycopg's `%s` translated the same way). The store's texts
    hold no `?` but placeholders and no `%`."""
    parts = text.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], 1):
        out.append(f"${i}")
        out.append(part)
    return "".join(out).encode()


class _Sql(tuple[bytes, tuple[Any, ...]]):
    """A text as sent: its bytes with numbered placeholders, and a format a parameter."""

    __slots__ = ()


def _translated(text: str) -> _Sql:
    """The store's ?-text as `_PostgresStatements` sends it: every parameter in the format
    psycopg's `%s` asks for."""
    from psycopg.adapt import PyFormat

    return _Sql((numbered(text), (PyFormat.AUTO,) * text.count("?")))


class _PostgresStatements:
    """The store's statements on one psycopg connection, sent through psycopg's own C
    layer (its parameter dumpers and row loaders, its libpq generator and wait) without
    the Python of its cursor's `execute`, which was most of the CA's instructions per
    statement: a read of one row took 15 µs of CPU through the cursor and 8 µs this way,
    in a loop (docs/decisions.md). The same protocol messages go to the server: the same
    statements, with the same parameter types and values, in the same order, each on its
    own (but `pipelined`'s, before one Sync); BEGIN, COMMIT and ROLLBACK still go through
    the cursor.

    Prepared statements as psycopg's cursor prepares them (the connection's own
    `prepare_threshold` and `prepared_max`: a text is prepared at its use after the
    threshold's, never with a threshold of None), under names of their own (psycopg's
    are `_pg3_N`), kept per connection (`Database._statements_for`). At the bound the
    least recently used one is given up, as psycopg did (`_evict`), its Close sent in
    the round trip of the PREPARE that takes its place: none of its own.

    A statement's results are read to the end before anything else is sent: one
    interrupted between its send and the end of its reading (a Ctrl-C outside psycopg's
    wait, which cancels and reads on) closes the connection (`_interrupted`), which
    the pool then takes for a broken one, rather than keeping it with results unread.

    psycopg's `generators`, `Transformer` and the connection's `wait` and `lock` are not
    its public API: pyproject.toml keeps psycopg to the series this was tested with, and
    every PostgreSQL test runs through here."""

    __slots__ = (
        "_batch", "_closes", "_closing", "_encoding", "_error", "_execute", "_fetch", "_flush",
        "_lock", "_most", "_names", "_pg", "_threshold", "_tx", "_uses", "_wait", "prepares",
    )  # fmt: skip

    USES_KEPT = 4096  # texts counted towards preparation, per connection

    def __init__(self, conn: Any) -> None:
        from psycopg import capabilities, errors, generators
        from psycopg.adapt import Transformer

        self._pg = conn.pgconn
        self._tx = Transformer(conn)
        self._wait = conn.wait  # psycopg's: a Ctrl-C cancels the query on the server
        self._execute = generators.execute
        self._flush = generators.send
        self._fetch = generators.fetch_many
        self._lock = conn.lock
        self._error = errors.error_from_result
        self._encoding = conn.info.encoding
        self._threshold: int | None = conn.prepare_threshold
        most = conn.prepared_max
        self._most: int = most if most is not None else 1 << 30
        self.prepares = self._threshold is not None
        # Both least recently used first (a dict's order is its insertions'): a prepared
        # statement's name is put back at the end at each use, a text's count at each
        # counted use.
        self._names: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._uses: dict[tuple[bytes, tuple[int, ...]], int] = {}
        self._closing: list[bytes] = []  # given up here, to Close on the server
        self._closes = capabilities.has_send_close_prepared()  # libpq 17 and later
        self._batch: Sequence[tuple[Any, ...]] = ()  # `pipelined`'s statements bound so far

    def send(self, sql: _Sql, params: Sequence[Any]) -> Any:
        """Run one statement; its result (psycopg's PGresult), or the error it raised."""
        pg = self._pg
        with self._lock:
            bound = self._bind(sql, params)
            try:
                self._start(bound)
                res = self._wait(self._execute(pg))[-1]
            except BaseException:
                self._interrupted()
                raise
        status = res.status
        if status != _TUPLES_OK and status != _COMMAND_OK and status != _EMPTY_QUERY:
            self._failed_with(bound, res)
        return res

    def _bind(self, sql: _Sql, params: Sequence[Any]) -> tuple[Any, ...]:
        """(key, prepared name or None, dumped values, their formats) of one statement,
        prepared first if this use is past the threshold (`_prepare`). Under the lock."""
        query, formats = sql
        if len(params) != len(formats):
            from psycopg import ProgrammingError

            raise ProgrammingError(
                f"the query has {len(formats)} placeholders but {len(params)} parameters"
            )
        tx = self._tx
        if formats:
            values: Any = tx.dump_sequence(params, formats)
            key = (query, tx.types or ())
            param_formats = tx.formats
        else:
            values, key, param_formats = None, (query, ()), None
        names = self._names
        name = names.pop(key, None)
        if name is None:
            name = self._prepare(key)
        else:  # put back last, the most recently used (`_evict` takes the first)
            names[key] = name
        return key, name, values, param_formats

    def _start(self, bound: tuple[Any, ...]) -> None:
        """Send a `_bind`ed statement, by its prepared name if it has one."""
        (query, types), name, values, param_formats = bound
        if name is None:
            self._pg.send_query_params(
                query, values, param_types=types, param_formats=param_formats
            )
        else:
            self._pg.send_query_prepared(name, values, param_formats=param_formats)

    def _failed_with(self, bound: tuple[Any, ...], res: Any) -> NoReturn:
        """Raise the error of a statement's failed result; a prepared one the server lost
        or can no longer run is forgotten first (`_forget_stale`)."""
        if bound[1] is not None:
            self._forget_stale(bound[0], res)
        raise self._failed(res)

    def _forget_stale(self, key: tuple[bytes, tuple[int, ...]], res: Any) -> None:
        """After a prepared statement's execution failed: if the server no longer has it
        (DISCARD ALL or DEALLOCATE ALL sent on the connection by something else) or can
        no longer run it (a schema change made elsewhere, "cached plan must not change
        result type"), forget its name, so that it is counted and prepared afresh under
        a new one: kept, every later use would fail the same way for the connection's
        life. The stale one, if the server still has it, is closed with the next PREPARE."""
        from psycopg import pq

        if res.error_field(pq.DiagnosticField.SQLSTATE) in _STALE_PREPARED:
            name = self._names.pop(key, None)
            if name is not None:  # a plan the server can no longer run is still its
                self._closing.append(name)

    def _failed(self, res: Any) -> Exception:
        """The error a result that is not rows or a command's count stands for, as
        psycopg's cursor raises it."""
        from psycopg import InternalError, ProgrammingError, pq

        status = pq.ExecStatus(res.status)
        if status == pq.ExecStatus.FATAL_ERROR:
            return self._error(res, encoding=self._encoding)
        if status.name.startswith("COPY_"):
            return ProgrammingError("COPY cannot be used with this method; use copy() instead")
        return InternalError(f"unexpected result status from query: {status.name}")

    def pipelined(self, statements: Sequence[tuple[_Sql, Sequence[Any]]]) -> list[Any]:
        """Statements sent together before one Sync, their results in order: in
        autocommit, one implicit transaction (PostgreSQL's extended protocol: committed
        at the Sync, rolled back whole if one fails, the rest then skipped), each
        statement on its own snapshot as in a BEGIN block; one round trip where BEGIN,
        the statements and COMMIT take one each. Statements to prepare are prepared
        first, each a round trip of its own, as `send` does."""
        # Loops, not comprehensions, zip(strict=True) or enumerate: on the request path
        # each comprehension is a function made and called, each zip or enumerate an
        # object (and zip's keyword parsed).
        pg, bind, start, wait, fetch = self._pg, self._bind, self._start, self._wait, self._fetch
        with self._lock:
            sends: list[tuple[Any, ...]] = []
            self._batch = sends  # not given up while they wait to be sent (`_evict`)
            try:
                for sql, params in statements:
                    sends.append(bind(sql, params))
            finally:
                self._batch = ()
            try:
                pg.enter_pipeline_mode()
                for bound in sends:
                    start(bound)
                pg.pipeline_sync()
                wait(self._flush(pg))
                results = []
                for _ in sends:
                    results.append(wait(fetch(pg))[-1])
                wait(fetch(pg))  # the Sync's
                pg.exit_pipeline_mode()
            except BaseException:
                self._interrupted()
                raise
        for res in results:
            status = res.status  # the first failure; those after it were skipped
            if status != _TUPLES_OK and status != _COMMAND_OK:
                self._failed_with(sends[results.index(res)], res)
        return results

    def _prepare(self, key: tuple[bytes, tuple[int, ...]]) -> bytes | None:
        """Prepare the statement if this use is past the threshold (its name), else count
        the use (None). At the bound, the least recently used is given up first."""
        threshold = self._threshold
        if threshold is None:
            return None
        uses = self._uses.get(key, 0)
        if uses < threshold:
            self._count(key, uses)
            return None
        if len(self._closing) >= self._most and self._waits():
            return None  # the server's count bounded until the names can go
        name = f"_acmekit_{next(_PREPARED_NAMES)}".encode()
        if len(self._names) >= self._most:
            self._evict()
        self._parse(name, key)
        self._uses.pop(key, None)
        self._names[key] = name
        return name

    def _count(self, key: tuple[bytes, tuple[int, ...]], uses: int) -> None:
        """One more use of an unprepared text; the least recently counted text is
        forgotten past `USES_KEPT`, so that texts met once (a client's shapes) cannot
        keep a later text from being counted."""
        counted = self._uses
        if uses:
            del counted[key]
        elif len(counted) >= self.USES_KEPT:
            del counted[next(iter(counted))]
        counted[key] = uses + 1

    def _evict(self) -> None:
        """Give up the least recently used prepared statements down to below the bound,
        as psycopg did: statements a client's requests shape (lists whose length it
        chooses) must not keep the hot ones unprepared for the connection's life. Their
        names are Closed with the next PREPARE (`_parse`). Those `pipelined` has bound
        and not yet sent are kept, past the bound if need be, until the next time."""
        names, most = self._names, self._most
        busy = {bound[0] for bound in self._batch}
        while len(names) >= most:
            victim = next((key for key in names if key not in busy), None)
            if victim is None:
                return
            self._closing.append(names.pop(victim))

    def _waits(self) -> bool:
        """Whether names given up wait to be closed (`_closed_with`): a libpq without the
        protocol's Close, in a transaction block."""
        return not self._closes and self._pg.transaction_status != _IDLE

    def _parse(self, name: bytes, key: tuple[bytes, tuple[int, ...]]) -> None:
        """PREPARE the text under `name`, in one round trip with the Close of every name
        given up since the last one (`_closed_with`)."""
        pg = self._pg
        try:
            if self._closing:
                res = self._closed_with(name, key)
            else:
                pg.send_prepare(name, key[0], param_types=key[1])
                res = self._wait(self._execute(pg))[-1]
        except BaseException:
            # Interrupted once the PREPARE was read (psycopg's wait, on a Ctrl-C, cancels
            # and reads it to its end; or one lands just after): the connection is kept
            # and the server may hold the name, recorded nowhere else. It is Closed with
            # the next PREPARE, as any given up (a Close of a name the server lacks is
            # no error; a DEALLOCATE's failure skips nothing).
            self._closing.append(name)
            self._interrupted()
            raise
        if res.status != _COMMAND_OK:
            raise self._failed(res)

    def _closed_with(self, name: bytes, key: tuple[bytes, tuple[int, ...]]) -> Any:
        """`_parse`'s round trip in libpq's pipeline mode, the PREPARE's result: each
        Close, then the Parse, before one Sync (the protocol's Close of a name the server
        no longer has is no error, so it skips nothing). A libpq older than 17 has no
        Close: there each name's DEALLOCATE, which fails on such a name, follows the
        Parse's Sync with a Sync of its own, so that its failure skips nothing either, and
        is sent only outside a transaction block, which it would abort; inside one the
        names wait for the next PREPARE, and past `prepared_max` of them nothing more is
        prepared until they have gone."""
        pg, wait, fetch, closes = self._pg, self._wait, self._fetch, self._closes
        closing = [] if self._waits() else self._closing
        pg.enter_pipeline_mode()
        if closes:
            for old in closing:
                pg.send_close_prepared(old)
        pg.send_prepare(name, key[0], param_types=key[1])
        pg.pipeline_sync()
        if not closes:
            for old in closing:
                pg.send_query_params(b"DEALLOCATE " + old, None)
                pg.pipeline_sync()
        wait(self._flush(pg))
        closed = [wait(fetch(pg))[-1] for _ in closing] if closes else []
        res = wait(fetch(pg))[-1]
        for _ in range(1 if closes else 2 * len(closing) + 1):  # Syncs; DEALLOCATEs, done
            wait(fetch(pg))  # or failed on a name already gone
        pg.exit_pipeline_mode()
        for done in closed:
            if done.status != _COMMAND_OK:  # and the PREPARE skipped: Closed next time
                raise self._failed(done)
        closing.clear()
        return res

    def _interrupted(self) -> None:
        """After anything raised between a send and the end of its reading (a Ctrl-C,
        a KeyboardInterrupt or another BaseException outside psycopg's wait, or inside
        it while a pipeline had more to read): if results are left unread (a command in
        progress, or pipeline mode still on), the connection is closed, so that the pool
        gives it up as broken (`_PostgresUse._release`) and its next user never reads
        them as its own. psycopg's wait, interrupted, cancels the statement and reads it
        to the end: that connection is idle again and kept."""
        pg = self._pg
        if pg.pipeline_status or pg.transaction_status == _ACTIVE:
            pg.finish()

    def rows(self, res: Any, one: bool) -> Any:
        """The result's rows as tuples (a cursor's fetchall), or its first (fetchone)."""
        if res.status != _TUPLES_OK:
            from psycopg import ProgrammingError

            raise ProgrammingError("the last operation didn't produce records")
        tx = self._tx
        tx.set_pgresult(res)
        if one:
            return tx.load_row(0, tuple) if res.ntuples else None
        return tx.load_rows(0, res.ntuples, tuple)


_EMPTY_QUERY = 0  # psycopg.pq.ExecStatus, as ints: compared on every statement
_COMMAND_OK = 1
_TUPLES_OK = 2
_IDLE = 0  # psycopg.pq.TransactionStatus: outside a transaction block
_ACTIVE = 1  # a command in progress, its results unread
# SQLSTATEs of a prepared statement the server no longer has (invalid_sql_statement_name)
# or no longer runs (feature_not_supported: "cached plan must not change result type").
_STALE_PREPARED = frozenset((b"26000", b"0A000"))
_PREPARED_NAMES = itertools.count()  # unique in the process, so never on one connection twice


def _count(res: Any) -> int:
    """A result's rows, or the rows its command changed (-1 if it does not say): a
    cursor's rowcount."""
    if res.status == _TUPLES_OK:
        return int(res.ntuples)
    found = res.command_tuples
    return -1 if found is None else int(found)


class _RanOnce(Exception):
    """`one_with_ahead`'s batch ran and committed, and its first statement's rows then
    failed to load: `error`, raised as it is, the statement not sent again."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


class _FormatCursor(Cursor):
    """PostgreSQL's: each ?-text translated once (`numbered`) and run through the
    connection's `_PostgresStatements`; `many` through psycopg's cursor as before."""

    __slots__ = ("_statements", "_texts")

    def __init__(self, cur: Any, texts: Texts, statements: _PostgresStatements) -> None:
        super().__init__(cur)
        self._texts = texts  # ?-text -> `_translated`, kept up to a bound (`Database`)
        self._statements = statements

    def run(self, text: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed (a cursor's rowcount)."""
        return _count(self._statements.send(self._texts[text], params))

    def many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        super().many(text.replace("?", "%s"), rows)

    def pipelined(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Statements as one implicit transaction in one round trip
        (`_PostgresStatements.pipelined`); the rows each changed."""
        texts = self._texts
        sent = [(texts[text], params) for text, params in statements]
        return [_count(res) for res in self._statements.pipelined(sent)]

    def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Each statement's rows, all sent before one Sync (`pipelined`): in the
        caller's transaction, one round trip for all (a failure raises, the rest
        skipped, and the caller's block rolls back)."""
        texts, sent = self._texts, self._statements
        translated = []
        for text, params in statements:
            translated.append((texts[text], params))
        results = sent.pipelined(translated)
        found = []
        for res in results:
            found.append(sent.rows(res, False) if res.status == _TUPLES_OK else [])
        return found

    def one_with_ahead(
        self, text: str, params: Sequence[Any], ahead: Sequence[Ahead[Any]], last: bool = False
    ) -> Any:
        """`one`, with the reads `ahead` after it before one Sync (`pipelined`): each
        read's rows (a cursor's fetchall) left on it for its `result()`. `last`: the
        reads before it instead, so that the row locks it takes are held no longer
        than alone (a read that fails then skips it)."""
        texts, sent = self._texts, self._statements
        own = (texts[text], params)
        statements = [] if last else [own]
        for read in ahead:
            statements.append((texts[read.text], read.params))
        if last:
            statements.append(own)
        results = sent.pipelined(statements)
        # Committed from here: a failure to load an answer must not send the first
        # statement again (`_with_ahead`'s fallback would redeem the nonce twice).
        try:
            first = sent.rows(results[len(ahead) if last else 0], True)
        except Exception as exc:
            raise _RanOnce(exc) from None
        skip = 0 if last else 1
        for i in range(len(ahead)):
            res = results[i + skip]
            try:
                ahead[i]._rows = sent.rows(res, False) if res.status == _TUPLES_OK else None
            except Exception:  # read again, and failed, where its handler reads it
                ahead[i]._rows = None
        return first

    def one(self, text: str, params: Sequence[Any] = ()) -> Any:
        statements = self._statements
        return statements.rows(statements.send(self._texts[text], params), True)

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        statements = self._statements
        return list(statements.rows(statements.send(self._texts[text], params), False))


class _Held(threading.local):
    """A thread's own connection: the pool's record of it, the driver's connection, the
    pool generation it came from, and whether a block of this thread is using it."""

    fairy: Any = None
    dbapi: Any = None
    cursor: Any = None  # PostgreSQL's: one a thread, reused (psycopg's are Python objects)
    wrapped: Any = None  # and our `_FormatCursor` over it
    sqlite: _SqliteUse | None = None  # SQLite's connection and cursor, as one block
    generation = -1
    busy = False


class _SqliteUse:
    """A transaction (or a lone statement) on this thread's SQLite connection: committed
    at the end of the block, rolled back if it raises. A class, not a generator: it runs
    several times a request. One a thread, with the connection's one cursor, both kept:
    a new cursor a block cost an allocation, a weak reference the connection keeps, and
    a close (the statements a cursor ran are reset when they finish, or by its next).
    Blocks nested on one thread share the connection, and so its transaction, as they
    always did on SQLite."""

    __slots__ = ("_conn", "_cur", "_cursor")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self._cursor = Cursor(self._cur)

    def __enter__(self) -> Cursor:
        return self._cursor

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        conn = self._conn
        if not conn.in_transaction:  # reads only: nothing to commit or roll back
            return
        if kind is None:
            try:
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        else:
            conn.rollback()

    # A lone statement as a block of its own would run it (`with db.once() as c`), in
    # one call: the block's protocol and the wrapper's calls cost a read about a sixth.

    def one(self, text: str, params: Sequence[Any]) -> Any:
        cur = self._cur
        try:
            cur.execute(text, params)
            row = cur.fetchone()
        except BaseException:
            self.__exit__(True, None, None)
            raise
        if self._conn.in_transaction:
            self.__exit__(None, None, None)
        return row

    def all(self, text: str, params: Sequence[Any]) -> list[Any]:
        cur = self._cur
        try:
            cur.execute(text, params)
            rows: list[Any] = cur.fetchall()
        except BaseException:
            self.__exit__(True, None, None)
            raise
        if self._conn.in_transaction:
            self.__exit__(None, None, None)
        return rows

    def run(self, text: str, params: Sequence[Any]) -> int:
        """A lone write. Outside a transaction, in SQLite's autocommit: the statement is
        its own transaction, committed when it returns, as sqlite3's BEGIN, the write
        and COMMIT were (the same locks taken at the same point: a deferred BEGIN takes
        none), without the two statements sqlite3 prepares from their text each time
        (about a third of a small write's instructions, docs/decisions.md). Inside a
        block of this thread that has begun, it joins the block's transaction and
        commits it, as before."""
        conn, cur = self._conn, self._cur
        if not conn.in_transaction:
            level = conn.isolation_level
            conn.isolation_level = None
            try:
                cur.execute(text, params)
            finally:
                conn.isolation_level = level
            return int(cur.rowcount)
        try:
            cur.execute(text, params)
        except BaseException:
            self.__exit__(True, None, None)
            raise
        self.__exit__(None, None, None)
        return int(cur.rowcount)


class _SqliteSynced:
    """A block on this thread's kept SQLite connection (`_SqliteUse`) whose commit syncs
    the WAL: the connection at `synchronous=FULL` from before the block's first statement
    to after its commit, NORMAL again for every other."""

    __slots__ = ("_synced", "_use")

    def __init__(self, use: _SqliteUse) -> None:
        self._use = use
        self._synced = synced(use._conn)

    def __enter__(self) -> Cursor:
        self._synced.__enter__()
        try:
            return self._use.__enter__()
        except BaseException:  # no block to end: NORMAL again at once
            self._synced.__exit__(None, None, None)
            raise

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            self._use.__exit__(kind, exc, tb)
        finally:
            self._synced.__exit__(None, None, None)


class _BeginLater(Cursor):
    """A transaction's cursor whose BEGIN goes with its first statements: before the
    Sync of its first `batch` (one round trip for BEGIN and the batch), or on its own
    before any other first statement. `begun`: whether BEGIN was sent (or may have
    been: a failure after the send still leaves a ROLLBACK to send)."""

    __slots__ = ("_inner", "begun")

    def __init__(self, inner: Cursor) -> None:
        super().__init__(inner._cur)
        self._inner = inner
        self.begun = False

    def _begin(self) -> None:
        if not self.begun:
            self.begun = True
            self._cur.execute("BEGIN")

    def run(self, text: str, params: Sequence[Any] = ()) -> int:
        self._begin()
        return self._inner.run(text, params)

    def many(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        self._begin()
        self._inner.many(text, rows)

    def one(self, text: str, params: Sequence[Any] = ()) -> Any:
        self._begin()
        return self._inner.one(text, params)

    def all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        self._begin()
        return self._inner.all(text, params)

    def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        if self.begun:
            return self._inner.batch(statements)
        self.begun = True
        return self._inner.batch([("BEGIN", ()), *statements])[1:]


class _PostgresUse:
    """On this thread's PostgreSQL connection, kept in autocommit: a lone statement as
    it is (one round trip), a transaction between BEGIN and COMMIT sent on the cursor.
    While a block of this thread uses that connection, a nested block takes one from
    the pool, so that it stays a transaction of its own as it always was."""

    __slots__ = ("_begin_later", "_cur", "_db", "_fairy", "_later", "_own", "_tx")

    def __init__(self, db: Database, tx: bool, begin_later: bool = False) -> None:
        self._db = db
        self._tx = tx
        self._begin_later = begin_later  # BEGIN with the first statements (`_BeginLater`)
        self._later: _BeginLater | None = None

    def __enter__(self) -> Cursor:
        db = self._db
        held = db._local
        if held.busy:  # nested: a pooled connection of its own
            fairy: Any = db.engine.raw_connection()
            self._fairy = fairy
            self._own = True
            dbapi = fairy.dbapi_connection
            dbapi.autocommit = True
            self._cur = dbapi.cursor()
            wrapped = None
        else:
            fairy = self._fairy = db._postgres_conn()
            self._own = False
            held.busy = True
            self._cur = held.cursor
            wrapped = held.wrapped
        cur = self._cur
        try:
            if wrapped is None:  # its first use may send a statement (`_statements_for`)
                wrapped = _FormatCursor(cur, db._texts, db._statements_for(dbapi))
            if self._tx and self._begin_later:
                wrapped = self._later = _BeginLater(wrapped)
            elif self._tx:
                cur.execute("BEGIN")
        except BaseException as exc:
            self._release(exc)
            raise
        return wrapped

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        cur, later = self._cur, self._later
        try:
            if self._tx and (later is None or later.begun):  # else nothing was begun
                if kind is None:
                    cur.execute("COMMIT")
                else:
                    self._quiet_rollback(cur)
            if self._own:
                cur.close()
        except BaseException as failed:
            if exc is None:  # the commit failed
                self._quiet_rollback(cur)
                self._release(failed)
                raise
        self._release(exc)

    def _quiet_rollback(self, cur: Any) -> None:
        """ROLLBACK, unless the connection is gone (then there is nothing to roll back)."""
        with suppress(*UNAVAILABLE):
            cur.execute("ROLLBACK")

    def _release(self, exc: BaseException | None) -> None:
        db, fairy = self._db, self._fairy
        lost = isinstance(exc, UNAVAILABLE) and db._is_disconnect(fairy, exc)
        if self._own:
            if lost:
                fairy.invalidate(exc)
                db._renew_pool()
            elif not fairy.dbapi_connection.closed:
                fairy.dbapi_connection.autocommit = False
            fairy.close()
            return
        db._local.busy = False
        if lost:
            db._drop_held()
            db._renew_pool()
        elif exc is not None and db._local.dbapi is not None and db._local.dbapi.closed:
            # Closed on this side, the server still up: `_PostgresStatements` gives its
            # connection up when interrupted with results unread (Ctrl-C), and a kept closed
            # connection would fail the thread's next request. Only this one is replaced.
            db._drop_held()


class Database:
    """Short transactions over one engine, in SQLAlchemy Core (`tx`) or on the driver's
    cursor (`raw`, `once`). All repositories of a store share one, and so its connections.

    The driver's path keeps one connection per thread, checked out of the pool once: a
    checkout and checkin cost more than a short statement (SQLite: three times; on
    PostgreSQL about 25 µs of SQLAlchemy's Python each way, docs/decisions.md). After a
    disconnect (the server restarted) the pool is renewed and every thread's kept
    connection is replaced at its next use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._local = _Held()
        self._generation = 0
        self.integrity: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        # Kept up to a bound: some texts follow what a client sent (an order's joined
        # inserts, by its identifiers' kinds), too many shapes to keep all.
        self._texts = Texts(_translated, FORMAT_TEXTS_KEPT)
        # Each connection's prepared statements, by its libpq connection (the same
        # object however the pool wraps it): a pooled connection is met again.
        self._statements: weakref.WeakKeyDictionary[Any, _PostgresStatements] = (
            weakref.WeakKeyDictionary()
        )
        if not self._sqlite:
            sa.event.listen(engine, "engine_disposed", self._disposed)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def raw(self, begin_later: bool = False) -> AbstractContextManager[Cursor]:
        """One transaction through the driver's own cursor: committed when the block
        ends, rolled back if it raises. `begin_later`: on PostgreSQL its BEGIN sent with
        its first statements, in the round trip of a first `batch` (`_BeginLater`)."""
        if self._sqlite:
            return self._local.sqlite or self._sqlite_use()
        return _PostgresUse(self, tx=True, begin_later=begin_later)

    def durable(self) -> AbstractContextManager[Cursor]:
        """`raw` whose commit is on disk when the block ends: on SQLite the WAL synced at
        that commit (`synced`), on PostgreSQL as every commit. For the commits after
        which something exists outside the CA (a certificate, a revocation); no other
        commit pays the sync (docs/decisions.md, "Synced commits")."""
        if self._sqlite:
            return _SqliteSynced(self._local.sqlite or self._sqlite_use())
        return _PostgresUse(self, tx=True)

    def durable_tx(self) -> AbstractContextManager[Connection]:
        """`tx` whose commit is on disk when the block ends (`durable`)."""
        return durable_begin(self.engine)

    def once(self) -> AbstractContextManager[Cursor]:
        """For one statement, atomic on its own (or reads that need no common snapshot):
        on PostgreSQL in autocommit, one round trip instead of three (psycopg sends
        BEGIN and COMMIT as round trips of their own); on SQLite the same as `raw`, whose
        kept connection commits without a round trip."""
        if self._sqlite:
            return self._local.sqlite or self._sqlite_use()
        return _PostgresUse(self, tx=False)

    def _sqlite_use(self) -> _SqliteUse:
        """This thread's SQLite connection (the driver's) with its cursor, kept: SQLite's
        connections live in this process and nothing renews them."""
        held = self._local
        held.fairy = self.engine.raw_connection()
        held.dbapi = held.fairy.dbapi_connection
        held.sqlite = _SqliteUse(held.dbapi)
        return held.sqlite

    def _postgres_conn(self) -> Any:
        """This thread's PostgreSQL connection (the pool's record of it), in autocommit;
        a new one if the pool was renewed since it was taken."""
        held = self._local
        if held.fairy is not None and held.generation != self._generation:
            self._drop_held()
        if held.fairy is None:
            fairy: Any = self.engine.raw_connection()
            dbapi = fairy.dbapi_connection
            try:
                dbapi.autocommit = True
                statements = self._statements_for(dbapi)
            except BaseException as exc:
                if isinstance(exc, UNAVAILABLE) and self._is_disconnect(fairy, exc):
                    fairy.invalidate(exc)
                    self._renew_pool()
                else:
                    fairy.close()
                raise
            held.fairy, held.dbapi = fairy, dbapi
            held.cursor = dbapi.cursor()
            held.wrapped = _FormatCursor(held.cursor, self._texts, statements)
            held.generation = self._generation
        return held.fairy

    def _statements_for(self, dbapi: Any) -> _PostgresStatements:
        """The connection's statements: made once a connection (its prepared ones)."""
        key = dbapi.pgconn
        found = self._statements.get(key)
        if found is None:
            found = _PostgresStatements(dbapi)  # with the connection's own threshold
            if found.prepares:
                # psycopg prepares nothing more here, and forgets what it prepared:
                # holding prepared statements of its own, it sends DEALLOCATE ALL after
                # a ROLLBACK (its `rollback()`, as SQLAlchemy's transactions on this
                # pooled connection end), which would drop ours too. DEALLOCATE ALL is
                # sent while its preparation is still on: only then does its cursor see
                # the command and empty its own record of what it prepared.
                cur = dbapi.cursor()
                try:
                    cur.execute("DEALLOCATE ALL")
                finally:
                    cur.close()
                dbapi.prepare_threshold = None
            self._statements[key] = found
        return found

    def _drop_held(self) -> None:
        """Give this thread's kept connection up (closed: it may be dead or stale)."""
        held = self._local
        fairy, held.fairy, held.dbapi = held.fairy, None, None
        held.cursor = held.wrapped = None
        if fairy is not None:
            with suppress(*UNAVAILABLE):
                fairy.invalidate()

    def _is_disconnect(self, fairy: Any, exc: BaseException) -> bool:
        dialect = self.engine.dialect
        return bool(dialect.is_disconnect(exc, fairy.dbapi_connection, None))  # type: ignore[arg-type]

    def _renew_pool(self) -> None:
        """After a disconnect, drop every idle connection of the pool, which died with
        it: the next checkout connects afresh. This, not a ping per checkout, is how the
        pool recovers (docs/decisions.md)."""
        self.engine.dispose()

    def _disposed(self, _engine: Engine) -> None:
        """The pool was renewed (a disconnect, or the store closing): every thread's kept
        connection is replaced at its next use; this thread's, if idle, goes now."""
        self._generation += 1
        if not self._local.busy:
            self._drop_held()


T = TypeVar("T")


class Ahead(Generic[T]):
    """A read a handler will make, sent ahead in the round trip of the request's first
    statement (the nonce's, or the account's) on PostgreSQL, where each round trip costs
    the CA a wake-up of its process: `Repository._with_ahead`. `result()` is the answer
    read then, or else (SQLite, a request that sent nothing ahead) the read made now.
    The statement is a read, so sending it before the request's checks have passed
    makes nothing visible; its answer is used only where the handler would have read
    it, after them."""

    __slots__ = ("_decode", "_read", "_rows", "params", "text")

    def __init__(
        self,
        text: str,
        params: Sequence[Any],
        decode: Callable[[list[Any], Sequence[Any]], T],
        read: Callable[[str, Sequence[Any]], list[Any]],
    ) -> None:
        """`decode` makes the answer from the statement's rows and its parameters;
        `read` is the repository's `_all`, for a read made now. No closure is made per
        request: a handler makes one or two of these on every request."""
        self.text = text
        self.params = params
        self._decode = decode
        self._read = read
        self._rows: list[Any] | None = None

    def result(self) -> T:
        """The answer: read ahead (once: a second call reads afresh), or read now."""
        rows = self._rows
        if rows is None:
            rows = self._read(self.text, self.params)
        else:
            self._rows = None
        return self._decode(rows, self.params)


def _together_text(texts: tuple[str, ...]) -> str:
    """PostgreSQL: the statements as one, each but the last a data-modifying WITH."""
    head = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(texts[:-1]))
    return f"WITH {head} {texts[-1]}"


# By the statements' texts: each a kept text of one shape (`Texts`), so the shapes are few.
_TOGETHER = Texts(_together_text)


class Repository:
    """A repository's access to the shared `Database`. Methods are short transactions;
    none reads the process's clock (the rate-limit buckets may read the database's)."""

    def __init__(self, db: Database) -> None:
        # Bound once here, not forwarded per call: the request path runs several a request.
        self._tx = db.tx
        self._raw = db.raw
        self._dialect = db.engine.dialect.name
        self._once = db.once
        self._durable = db.durable
        self._durable_tx = db.durable_tx
        self._postgres = not db._sqlite
        self._integrity = db.integrity
        self._held = db._local

    # One statement, atomic on its own, as `with self._once() as c: c.one(...)` (`all`,
    # `run`) would run it: on SQLite's kept block without the block's protocol.

    def _one(self, text: str, params: Sequence[Any] = ()) -> Any:
        use = self._held.sqlite
        if use is not None:
            return use.one(text, params)
        with self._once() as c:
            return c.one(text, params)

    def _all(self, text: str, params: Sequence[Any] = ()) -> list[Any]:
        use = self._held.sqlite
        if use is not None:
            return use.all(text, params)
        with self._once() as c:
            return c.all(text, params)

    def _run(self, text: str, params: Sequence[Any] = ()) -> int:
        use = self._held.sqlite
        if use is not None:
            return use.run(text, params)
        with self._once() as c:
            return c.run(text, params)

    def _with_ahead(
        self, text: str, params: Sequence[Any], ahead: Sequence[Ahead[Any]], last: bool = False
    ) -> Any:
        """One statement's first row (`_one`), and on PostgreSQL the `ahead` reads after
        it before one Sync: one implicit transaction, in one round trip. The first is
        the request's own (the nonce's write with the account's read, or the account's
        read): it fails as alone, and the reads after it are then skipped (their
        `result()` reads afresh if asked). Each runs on a snapshot of its own, as it
        did in autocommit. A read that fails leaves the first to run alone, as before.
        `last`: the reads sent before the statement (`one_with_ahead`)."""
        if not self._postgres or not ahead:
            return self._one(text, params)
        try:
            with self._once() as c:
                return c.one_with_ahead(text, params, ahead, last)  # type: ignore[attr-defined]
        except self._integrity:
            raise  # the first's (a used nonce): the reads were skipped
        except _RanOnce as ran:
            raise ran.error from None  # committed: sent again, a nonce would be redeemed twice
        except UNAVAILABLE:
            raise
        except Exception:
            # A read the driver or the server refused (a value taken from a request's
            # unverified payload that PostgreSQL cannot hold, a NUL): the whole was
            # rolled back, or never sent. The first alone, as it ran before; each read
            # is made, and fails, where its handler makes it (`Ahead.result`).
            return self._one(text, params)

    def _together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Writes that commit together, none reading what another writes. On PostgreSQL
        one statement, each but the last a data-modifying WITH (all run, on one
        snapshot), in autocommit: one round trip where a transaction takes one for
        BEGIN, one a statement and one for COMMIT. On SQLite one transaction. A lone
        write is atomic on its own: in autocommit on both (`_run`), with no BEGIN and
        COMMIT (on PostgreSQL two round trips more; on SQLite two statements)."""
        if len(statements) == 1:
            text, values = statements[0]
            self._run(text, values)
            return
        if self._postgres and statements:
            text = _TOGETHER[tuple(sql for sql, _ in statements)]
            params = [value for _, values in statements for value in values]
            with self._once() as c:
                c.run(text, params)
            return
        with self._raw() as c:
            for sql, values in statements:
                c.run(sql, values)
