"""A statement sent with reads ahead of it in one batch (`Repository._with_ahead`) runs
once: once the batch has committed, an answer that fails to load is not a reason to send
the statement again, which for the request's nonce would redeem it a second time and
answer badNonce for a nonce never used. Only a batch that did not commit (refused by the
driver or the server) leaves the statement to run alone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from acmekit.database import to_us
from acmekit.server.repos.base import Ahead
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.pendingorders import stored_account

NOW = datetime(2026, 12, 1, tzinfo=UTC)
# A value PostgreSQL holds and the driver cannot make a Python value of (after year 9999).
_UNLOADABLE = "SELECT CAST('infinity' AS timestamp) WHERE ? = 1"


def _rows(rows: list[Any], _params: Sequence[Any]) -> list[Any]:
    return rows


@pytest.mark.postgres
def test_a_read_whose_answer_fails_to_load_leaves_the_nonce_redeemed_once() -> None:
    with fresh_postgres_database("acmekit_loaded") as url:
        store = Store.from_url(url)
        try:
            acct = stored_account(store, NOW)
            accounts = store.accounts
            ahead = Ahead(_UNLOADABLE, (1,), _rows, accounts._all)
            assert accounts.redeem_nonce_for("n1", NOW, acct.id, (ahead,)) == (True, acct)
            with pytest.raises(psycopg.DataError):
                ahead.result()  # read again where it is asked for, and refused there
            assert accounts.redeem_nonce_for("n1", NOW, acct.id) == (False, None)
            assert accounts.account(acct.id) == acct  # the connection still serves
        finally:
            store.engine.dispose()


@pytest.mark.postgres
def test_a_first_statement_whose_row_fails_to_load_is_not_sent_again() -> None:
    with fresh_postgres_database("acmekit_loaded_first") as url:
        store = Store.from_url(url)
        try:
            accounts = store.accounts
            first = (
                "WITH n AS (INSERT INTO used_nonces (nonce, issued) VALUES (?, ?) RETURNING 1) "
                "SELECT CAST('infinity' AS timestamp) FROM n"
            )
            ahead = Ahead("SELECT 1 WHERE ? = 1", (1,), _rows, accounts._all)
            with pytest.raises(psycopg.DataError):  # not the second insert's UniqueViolation
                accounts._with_ahead(first, ("n2", to_us(NOW)), (ahead,))
            with accounts._once() as c:
                assert c.one("SELECT COUNT(*) FROM used_nonces WHERE nonce = ?", ("n2",)) == (1,)
        finally:
            store.engine.dispose()
