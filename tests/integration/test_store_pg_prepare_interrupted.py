"""A Ctrl-C that lands once a PREPARE has been read (psycopg's wait interrupted, which
cancels and reads the statement to its end, or a KeyboardInterrupt surfacing just after
the wait returned) leaves the connection idle and kept: the name it prepared on the
server must still be given up, or each such interruption leaves a prepared statement
the store no longer knows, outside `prepared_max`, for the connection's life."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from acmekit.server.store import Store

pytestmark = pytest.mark.postgres


class _CtrlCAfterRead:
    """psycopg's wait, with a KeyboardInterrupt raised once its `at`-th call has read
    its results to the end."""

    def __init__(self, wait: Callable[..., Any], at: int) -> None:
        self._real, self._at, self.calls = wait, at, 0

    def __call__(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        found = self._real(gen, *args, **kwargs)
        if self.calls == self._at:
            raise KeyboardInterrupt
        return found


def _server_names(store: Store) -> set[str]:
    with store.db.once() as c:
        return {str(n) for (n,) in c.all("SELECT name FROM pg_prepared_statements")}


def test_a_prepare_interrupted_after_its_read_leaves_no_name(pg_store: Store) -> None:
    db = pg_store.db
    with db.once() as c:
        c.one("SELECT 1")
    statements = db._statements_for(db._local.dbapi)
    for _ in range(5):  # the sixth use prepares
        with db.once() as c:
            assert c.one("SELECT ?::int * 3", (2,)) == (6,)
    real = statements._wait
    hook = _CtrlCAfterRead(real, at=1)
    statements._wait = hook
    with pytest.raises(KeyboardInterrupt), db.once() as c:
        c.one("SELECT ?::int * 3", (2,))
    statements._wait = real
    assert db._statements_for(db._local.dbapi) is statements  # the same connection, kept
    for _ in range(8):  # counted again, prepared again: the next PREPARE closes the lost
        with db.once() as c:
            assert c.one("SELECT ?::int * 3", (2,)) == (6,)
    known = {n.decode() for n in statements._names.values()}
    assert _server_names(pg_store) == known
