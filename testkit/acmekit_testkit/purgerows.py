"""Rows written straight into the CA's tables, as the purge's tests need them by the
thousand (an ACME flow a row would take minutes): an order as its columns, and a batch
of rows in one statement."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from acmekit.server.store import Store


def insert_rows(store: Store, table: str, rows: list[dict[str, Any]]) -> None:
    """`rows` (all of the same columns) into `table`, in one transaction."""
    if not rows:
        return
    names = list(rows[0])
    text = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
    with store.engine.begin() as conn:
        conn.execute(sa.text(text), rows)


def order_row(oid: str, expires: int, **extra: Any) -> dict[str, Any]:
    """An order of account "acct" that expires at `expires` (microseconds), never
    finalized unless `extra` says otherwise."""
    row: dict[str, Any] = {
        "id": oid,
        "account_id": "acct",
        "identifiers": "[]",
        "authz_ids": "[]",
        "expires": expires,
        "created": expires - 1,
        "finalize_started": None,
        "error": None,
        "certificate_id": None,
    }
    row.update(extra)
    return row
