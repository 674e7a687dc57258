"""The account's pending-authorizations count before and after migration 0010, on SQLite
and PostgreSQL: one account with many authorizations (default 100,000), nearly all of
them decided (valid, a few invalid, deactivated or expired), a few (default 10) pending.

The database is filled at revision 0009, the count read with 0009's statement, then
upgraded through 0010, 0011 and 0012 (each timed) and the count read with the code's
statement, and with the code's statement keeping 0009's probe of the challenges.
For each: the plan (SQLite's EXPLAIN QUERY PLAN; PostgreSQL's EXPLAIN (ANALYZE,
BUFFERS): rows and pages read), the SQLite VM's instructions (a progress handler called
at each: repeatable, where wall-clock time on a shared machine is not) and the median
wall-clock time of `--runs` reads, for scale only.

    .venv/bin/python bench/pending_count.py [--authzs 100000] [--pending 10]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from _common import fresh_database
from acmekit import migrate
from acmekit.database import create_engine, to_us
from acmekit.migrate import SERVER
from acmekit.server.repos import orders as orders_repo

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT = "cdn"
OLD_COUNT = (
    "SELECT COUNT(*), MIN(a.expires) FROM authorizations a WHERE a.account_id = ? "
    "AND a.stored_status = ? AND a.expires > ? AND NOT EXISTS (SELECT 1 FROM challenges c "
    "WHERE c.authz_id = a.id AND c.status IN (?, ?))"
)
OLD_PARAMS = (ACCOUNT, "pending", to_us(NOW), "valid", "invalid")
NEW_TEXT = orders_repo._PENDING_AUTHZS
NEW_PARAMS = (ACCOUNT, to_us(NOW))
# The count with 0009's probe of the challenges kept, exact whatever the fill's progress
# (measured for its cost; not the code's: docs/decisions.md, "The upgrade on a live CA").
PROBE_TEXT = (
    f"{NEW_TEXT} AND NOT EXISTS (SELECT 1 FROM challenges c "
    "WHERE c.authz_id = a.id AND c.status IN ('valid', 'invalid'))"
)


def _state(i: int, pending: int) -> tuple[str, int, str]:
    """(stored status, expiry from NOW in hours, the first challenge's status) of the
    i-th authorization: the first `pending` pending, then valid ones with some invalid,
    deactivated and expired among them (the second challenge stays pending)."""
    if i < pending:
        return "pending", 24, "pending"
    if i % 50 == 0:
        return "pending", 24, "invalid"
    if i % 97 == 0:
        return "deactivated", 720, "valid"
    if i % 89 == 0:
        return "pending", -24, "pending"
    return "pending", 720, "valid"


def _fill(engine: sa.Engine, count: int, pending: int) -> None:
    authzs, challenges = [], []
    for i in range(count):
        stored, hours, first = _state(i, pending)
        authz_id = f"z{i:07d}"
        authzs.append(
            {"i": authz_id, "v": f"n{i}.cdn.example.test", "s": stored}
            | {"e": to_us(NOW + timedelta(hours=hours))}
        )
        for n, (kind, status) in enumerate((("http-01", first), ("dns-01", "pending"))):
            challenges.append(
                {"i": f"{authz_id}-{n}", "z": authz_id, "t": kind} | {"k": f"t{i}-{n}", "s": status}
            )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO authorizations (id, account_id, identifier_type, "
                "identifier_value, wildcard, stored_status, expires) "
                f"VALUES (:i, '{ACCOUNT}', 'dns', :v, false, :s, :e)"
            ),
            authzs,
        )
        conn.execute(
            sa.text(
                "INSERT INTO challenges (id, authz_id, type, token, status) "
                "VALUES (:i, :z, :t, :k, :s)"
            ),
            challenges,
        )
    _analyze(engine)


def _analyze(engine: sa.Engine, vacuum: bool = False) -> None:
    with engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        if vacuum:  # outside a transaction
            raw.commit()
            raw.autocommit = True
        raw.cursor().execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
        if vacuum:
            raw.autocommit = False
        else:
            raw.commit()


def _measure(engine: sa.Engine, text: str, params: tuple[Any, ...], runs: int) -> dict[str, Any]:
    with engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        sqlite = isinstance(raw, sqlite3.Connection)
        sql = text if sqlite else text.replace("?", "%s")
        cur = raw.cursor()
        found: dict[str, Any] = {}
        if sqlite:
            cur.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            found["plan"] = [str(r[-1]) for r in cur.fetchall()]
            steps = [0]

            def step() -> int:
                steps[0] += 1
                return 0

            raw.set_progress_handler(step, 1)
            cur.execute(sql, params)
            found["answer"] = cur.fetchall()[0]
            raw.set_progress_handler(None, 0)
            found["vm_instructions"] = steps[0]
        else:
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY OFF) {sql}", params)
            found["plan"] = [str(r[0]) for r in cur.fetchall()]
            cur.execute(sql, params)
            found["answer"] = cur.fetchall()[0]
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            cur.execute(sql, params)
            cur.fetchall()
            times.append(time.perf_counter() - start)
        found["median_ms"] = round(statistics.median(times) * 1000, 3)
        raw.rollback()
    return found


def _show(label: str, found: dict[str, Any]) -> None:
    print(f"  {label}: answer {found['answer']}, median {found['median_ms']} ms", end="")
    if "vm_instructions" in found:
        print(f", {found['vm_instructions']} VM instructions", end="")
    print()
    for line in found["plan"]:
        print(f"    {line}")


def run(backend: str, count: int, pending: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp), "ca.db") as url:
        engine = create_engine(url)
        try:
            migrate.upgrade(engine, SERVER, "0009")
            _fill(engine, count, pending)
            print(f"{backend}: {count} authorizations, {pending} pending")
            old = _measure(engine, OLD_COUNT, OLD_PARAMS, runs)
            _show("0009's count", old)
            # the column, the trigger, then the fill and the index
            for revision in ("0010", "0011", "0012"):
                start = time.perf_counter()
                migrate.upgrade(engine, SERVER, revision)
                print(f"  migration to {revision}: {time.perf_counter() - start:.2f} s")
            _analyze(engine)
            new = _measure(engine, NEW_TEXT, NEW_PARAMS, runs)
            _show("0010's count", new)
            assert old["answer"] == new["answer"], (old["answer"], new["answer"])
            probe = _measure(engine, PROBE_TEXT, NEW_PARAMS, runs)
            _show("0010's count with the challenges' probe", probe)
            assert old["answer"] == probe["answer"], (old["answer"], probe["answer"])
            if backend != "sqlite":
                # The fill's UPDATE left the rows' undecided versions, which the index
                # built in the same transaction holds until a vacuum removes them.
                _analyze(engine, vacuum=True)
                _show("0010's count after VACUUM", _measure(engine, NEW_TEXT, NEW_PARAMS, runs))
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authzs", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run(backend, args.authzs, args.pending, args.runs)


if __name__ == "__main__":
    main()
