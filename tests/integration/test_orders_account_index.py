"""The orders table's indexes after migration 0009, on SQLite and PostgreSQL: no index on
the CA's tables is a leading part of another (each one every insert keeps up for
nothing), and every statement the CA sends that looks orders up by account_id (the
account's order list, the operator's counts and listing) is still planned on an index.

The statements are taken at the driver as the code sends them, then asked for their plan
(SQLite `EXPLAIN QUERY PLAN`, PostgreSQL `EXPLAIN` with sequential scans priced out, so a
plan names an index whenever one can serve the statement)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from acmekit import migrate
from acmekit.database import create_engine
from acmekit.migrate import SERVER
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server import admin, records
from acmekit.server.repos import base
from acmekit.server.repos import inspect as inspect_repo
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.legacy import load_v010
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _indexes(url: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """Each table's indexes (name -> columns), unique ones included."""
    engine = create_engine(url)
    try:
        found = sa.inspect(engine)
        return {
            table: {
                str(ix["name"]): tuple(str(c) for c in ix["column_names"])
                for ix in found.get_indexes(table)
            }
            for table in found.get_table_names()
        }
    finally:
        engine.dispose()


def _redundant(indexes: dict[str, dict[str, tuple[str, ...]]]) -> list[str]:
    """Non-unique indexes whose columns lead another index on the same table."""
    found = []
    for table, of_table in indexes.items():
        for name, cols in of_table.items():
            for other, other_cols in of_table.items():
                if (
                    other != name
                    and len(other_cols) > len(cols)
                    and other_cols[: len(cols)] == cols
                ):
                    found.append(f"{table}.{name} {cols} leads {other} {other_cols}")
    return found


@pytest.mark.parametrize("start", ["new", "v0.1.0"])
def test_no_index_leads_another(backend: str, tmp_path: Path, start: str) -> None:
    with fresh_database(backend, tmp_path, "ca.db") as url:
        if start == "v0.1.0":
            load_v010("ca", url)
        migrate.upgrade(create_engine(url), SERVER)
        indexes = _indexes(url)
        assert "ix_orders_account_id" not in indexes["orders"]
        assert indexes["orders"]["ix_orders_account_created"] == ("account_id", "created")
        assert _redundant(indexes) == []


def test_downgrading_0009_gives_the_index_back(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, "ca.db") as url:
        engine = create_engine(url)
        migrate.upgrade(engine, SERVER)
        migrate.downgrade(engine, SERVER, "0008")
        assert _indexes(url)["orders"]["ix_orders_account_id"] == ("account_id",)
        migrate.upgrade(engine, SERVER)
        assert "ix_orders_account_id" not in _indexes(url)["orders"]
        engine.dispose()


@contextmanager
def _statements() -> Iterator[list[tuple[str, Any]]]:
    """(text, parameters) of every statement connections opened meanwhile run; on SQLite
    the text with its parameters written in (the library's expanded trace)."""
    seen: list[tuple[str, Any]] = []

    class Recording(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            seen.append((str(query), params))
            return super().execute(query, params, **kwargs)

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.set_trace_callback(lambda text: seen.append((text, None)))
        elif isinstance(dbapi_conn, psycopg.Connection):
            dbapi_conn.cursor_factory = Recording

    # The store's own statements on PostgreSQL go past the cursor (repos/base.py's
    # `_PostgresStatements`), numbered `$1, $2, ...` in order: recorded in the cursor's
    # `%s` form, to be explained through one.
    statements = base._PostgresStatements
    send = statements.send

    def recorded_send(self: Any, sql: Any, params: Any) -> Any:
        seen.append((re.sub(r"\$\d+", "%s", sql[0].decode()), tuple(params)))
        return send(self, sql, params)

    sa.event.listen(sa.pool.Pool, "connect", on_connect)
    statements.send = recorded_send  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        statements.send = send  # type: ignore[method-assign]
        sa.event.remove(sa.pool.Pool, "connect", on_connect)


def _fill(store: Store, accounts: int, per_account: int) -> None:
    for a in range(accounts):
        acct = store.accounts.add_account(
            records.AccountRecord(
                id=f"acct{a}",
                thumbprint=f"{a:043d}",
                jwk={"kty": "EC", "crv": "P-256", "x": "x" * 43, "y": "y" * 43},
                contact=(),
                status=AccountStatus.VALID,
                created=NOW,
            )
        )
        for i in range(per_account):
            name = Identifier(IdentifierType.DNS, f"o{i}.a{a}.example.test")
            authz_id = f"z{a}-{i}"
            ch = records.ChallengeRecord(
                f"{authz_id}h",
                authz_id,
                ChallengeType.HTTP_01,
                f"t{a}-{i}",
                ChallengeStatus.PENDING,
            )
            authz = records.AuthorizationRecord(
                authz_id, acct.id, name, False, AuthorizationStatus.PENDING,
                NOW + timedelta(days=7), (ch,),
            )  # fmt: skip
            created = NOW + timedelta(seconds=i)
            order = records.OrderRecord(
                f"o{a}-{i}", acct.id, (name,), (authz_id,), created + timedelta(days=1), created
            )
            store.orders.add_order(order, [authz])


def _by_account(seen: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The statements that read orders by account_id."""
    return [
        (text, params)
        for text, params in seen
        if "account_id" in text
        and " orders" in text.replace("\n", " ")
        and text.lstrip().upper().startswith("SELECT")
        and "authorizations" not in text
    ]


def _plan(store: Store, text: str, params: Any) -> str:
    with store.engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
        cur = raw.cursor()
        if store.engine.dialect.name == "sqlite":
            cur.execute(f"EXPLAIN QUERY PLAN {text}")
            return "\n".join(str(row[-1]) for row in cur.fetchall())
        cur.execute("SET enable_seqscan = off")
        try:
            cur.execute(f"EXPLAIN {text}", params)
            return "\n".join(str(row[0]) for row in cur.fetchall())
        finally:
            cur.execute("RESET enable_seqscan")
            raw.rollback()


def test_orders_by_account_are_planned_on_the_account_created_index(
    backend: str, tmp_path: Path
) -> None:
    with fresh_database(backend, tmp_path, "ca.db") as url, _statements() as seen:
        store = Store.from_url(url)  # its connections are recorded from the start
        try:
            _fill(store, accounts=4, per_account=30)
            with store.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
            mark = len(seen)
            first = store.orders.account_orders("acct1", NOW, None, 5)
            assert len(first) == 5
            assert store.orders.account_orders("acct1", NOW, first[-1], 5)
            assert inspect_repo.account_counts(store.db, "acct1").orders == 30
            assert len(inspect_repo.list_orders(store.db, "acct1", 7)) == 7
            assert len(admin.list_orders(store, "acct2", 3, NOW)) == 3
            statements = _by_account(seen[mark:])
            # the order list's two pages, the operator's count, its listing twice
            assert len(statements) == 5, seen[mark:]
            for text, params in statements:
                plan = _plan(store, text, params)
                assert "ix_orders_account_created" in plan, (text, plan)
                # the account's rows are found by the index, not by reading the table
                assert "SCAN orders" not in plan and "Seq Scan" not in plan, (text, plan)
        finally:
            store.engine.dispose()
