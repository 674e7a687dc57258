"""A PostgreSQL transaction whose BEGIN goes with its first statements
(`Store.transaction(begin_later=True)`, finalize's takes and claim): in the round trip of
a first batch, before its Sync; on its own before any other first statement; none, and
no COMMIT or ROLLBACK, for a block that sent nothing. The block commits and rolls back as
a transaction begun at its start does, and a BEGIN prepared past the threshold runs as
the store's other prepared statements do."""

from __future__ import annotations

import pytest

from acmekit.server.store import Store
from acmekit_testkit.sqlcount import counting

pytestmark = pytest.mark.postgres

_PUT = "INSERT INTO rate_buckets (key, tat) VALUES (?, ?) RETURNING tat"
_GET = "SELECT tat FROM rate_buckets WHERE key = ?"


def _store(url: str) -> Store:
    return Store.from_url(url)


def test_begin_rides_with_the_first_batch(pg_url: str) -> None:
    with counting() as count:
        store = _store(pg_url)
        try:
            store.buckets.tat("warm")  # the connection's set-up, outside the count
            start = len(count.trips)
            with store.transaction(begin_later=True) as c:
                assert c.batch([(_PUT, ("a", 1)), (_PUT, ("b", 2))]) == [[(1,)], [(2,)]]
                assert c.one(_GET, ("a",)) == (1,)
            trips = [t[0].split()[0] for t in count.trips[start:]]
            assert trips == ["BEGIN", "SELECT", "COMMIT"]  # BEGIN, the two inserts: one trip
            assert len(count.trips[start]) == 3
            assert store.buckets.tat("b") == 2
        finally:
            store.engine.dispose()


def test_a_block_that_sends_nothing_begins_nothing(pg_url: str) -> None:
    with counting() as count:
        store = _store(pg_url)
        try:
            store.buckets.tat("warm")  # the connection's set-up, outside the count
            start = len(count.trips)
            with store.transaction(begin_later=True):
                pass
            assert count.trips[start:] == []
            with store.transaction(begin_later=True) as c:  # a lone first statement
                assert c.one(_GET, ("none",)) is None
            assert [t[0] for t in count.trips[start:]][::2] == ["BEGIN", "COMMIT"]
        finally:
            store.engine.dispose()


def test_a_block_that_raises_after_its_batch_rolls_it_back(pg_url: str) -> None:
    store = _store(pg_url)
    try:
        for i in range(8):  # past the preparation threshold: BEGIN prepared too
            with pytest.raises(RuntimeError), store.transaction(begin_later=True) as c:
                c.batch([(_PUT, (f"k{i}", i))])
                raise RuntimeError("refused")
            assert store.buckets.tat(f"k{i}") is None
            with store.transaction(begin_later=True) as c:
                c.batch([(_PUT, (f"k{i}", i))])
            assert store.buckets.tat(f"k{i}") == i
    finally:
        store.engine.dispose()
