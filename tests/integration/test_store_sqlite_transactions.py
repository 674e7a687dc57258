"""SQLite's transactions on the store's kept connection, as sqlite3 makes them.

sqlite3 opens a transaction (a deferred BEGIN) right before the first write of a block
and leaves reads before it in autocommit; a lone write outside a block runs in SQLite's
autocommit, its own transaction, without sqlite3's BEGIN and COMMIT. What must hold: a
block is atomic (a failure leaves none of its writes, and no other connection sees them
before the commit), reads before a block's first write hold no snapshot, a lone write is
committed when it returns (and joins a block that has begun, committing it, as it did),
and the connection keeps sqlite3's transactions for the next block.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.server.repos.base import Repository
from acmekit.server.store import Store

_INSERT = "INSERT INTO settings (name, value) VALUES (?, ?)"
_READ = "SELECT value FROM settings WHERE name = ?"


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "tx.db"


@pytest.fixture
def store(db_file: Path) -> Iterator[Store]:
    s = Store.from_url(f"sqlite:///{db_file}")
    yield s
    s.engine.dispose()


def _other(db_file: Path) -> sqlite3.Connection:
    """Another process's connection to the same file."""
    return sqlite3.connect(db_file, timeout=0.1, isolation_level=None)


def _value(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute(_READ, (name,)).fetchone()
    return None if row is None else str(row[0])


def test_a_failed_block_leaves_none_of_its_writes(store: Store, db_file: Path) -> None:
    with pytest.raises(RuntimeError), store.db.raw() as c:
        c.run(_INSERT, ("a", "lost"))
        raise RuntimeError("the caller refuses")
    with pytest.raises(store.db.integrity), store.db.raw() as c:
        c.run(_INSERT, ("b", "1"))
        c.run(_INSERT, ("b", "2"))
    other = _other(db_file)
    assert _value(other, "a") is None
    assert _value(other, "b") is None
    with store.db.raw() as c:  # the connection is usable, and out of any transaction
        c.run(_INSERT, ("c", "kept"))
    assert _value(other, "c") == "kept"


def test_a_blocks_writes_are_seen_by_others_only_after_its_commit(
    store: Store, db_file: Path
) -> None:
    other = _other(db_file)
    with store.db.raw() as c:
        c.run(_INSERT, ("d", "1"))
        c.run(_INSERT, ("e", "2"))
        assert _value(other, "d") is None
        with pytest.raises(sqlite3.OperationalError):  # the block holds the write lock
            other.execute(_INSERT, ("f", "theirs"))
    assert (_value(other, "d"), _value(other, "e")) == ("1", "2")


def test_reads_before_a_blocks_first_write_hold_no_snapshot(store: Store, db_file: Path) -> None:
    other = _other(db_file)
    with store.db.raw() as c:
        assert c.one(_READ, ("g",)) is None
        other.execute(_INSERT, ("g", "theirs"))  # not blocked: no transaction is open
        assert c.one(_READ, ("g",))[0] == "theirs"
        c.run(_INSERT, ("h", "mine"))  # begins here, on the latest commit
    assert _value(other, "h") == "mine"


def test_a_lone_write_is_committed_when_it_returns(store: Store, db_file: Path) -> None:
    repo = Repository(store.db)
    assert repo._run(_INSERT, ("i", "alone")) == 1
    assert _value(_other(db_file), "i") == "alone"
    with pytest.raises(store.db.integrity):
        repo._run(_INSERT, ("i", "again"))
    assert repo._one(_READ, ("i",))[0] == "alone"
    repo._run(_INSERT, ("j", "after"))  # nothing was left open by the failure
    assert _value(_other(db_file), "j") == "after"


def test_a_lone_write_in_a_begun_block_joins_it_and_commits_it(store: Store, db_file: Path) -> None:
    repo = Repository(store.db)
    other = _other(db_file)
    with store.db.raw() as c:
        c.run(_INSERT, ("l", "block"))
        repo._run(_INSERT, ("m", "lone"))
        assert (_value(other, "l"), _value(other, "m")) == ("block", "lone")


def test_the_connection_keeps_sqlite3s_transactions_after_a_lone_write(store: Store) -> None:
    repo = Repository(store.db)
    repo._run(_INSERT, ("n", "1"))
    with pytest.raises(store.db.integrity):
        repo._run(_INSERT, ("n", "2"))
    held = store.db._local.sqlite
    assert held is not None
    assert held._conn.isolation_level == ""
    with pytest.raises(RuntimeError), store.db.raw() as c:  # a block is atomic still
        c.run(_INSERT, ("o", "lost"))
        raise RuntimeError("the caller refuses")
    assert repo._one(_READ, ("o",)) is None
