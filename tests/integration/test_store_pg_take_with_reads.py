"""A bucket's take sent with reads before it in one round trip
(`BucketRepository.take_with_ahead`, PostgreSQL): newOrder's take with the account's
pending count. The take runs once whatever the reads do: a read the server refuses
skips the take in the batch, which is then made alone (one step, not two); granted or
refused, each read's answer is left for its `result()`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from acmekit.server.repos.base import Ahead
from acmekit.server.store import Store

STEP = 1_000_000
NOW = 1_800_000_000_000_000  # µs, the caller's clock


def _rows(rows: list[Any], _params: Sequence[Any]) -> list[Any]:
    return rows


def _tat(store: Store, key: str) -> int | None:
    return store.buckets.read(key, NOW)[0]


@pytest.mark.postgres
def test_a_read_the_server_refuses_leaves_the_take_made_once(pg_store: Store) -> None:
    buckets = pg_store.buckets
    failing = Ahead("SELECT 1 / (? - 1)", (1,), _rows, buckets._all)  # division by zero
    assert buckets.take_with_ahead("k:once", NOW, STEP, 3 * STEP, (failing,))
    assert _tat(pg_store, "k:once") == NOW + STEP  # one take, not two
    with pytest.raises(psycopg.errors.DivisionByZero):
        failing.result()  # read again where it is asked for, and refused there


@pytest.mark.postgres
def test_the_reads_are_answered_whether_the_take_is_granted_or_not(pg_store: Store) -> None:
    buckets = pg_store.buckets
    granted = Ahead("SELECT ? + 1", (41,), _rows, buckets._all)
    assert buckets.take_with_ahead("k:full", NOW, STEP, STEP, (granted,))
    refused = Ahead("SELECT ? + 2", (40,), _rows, buckets._all)
    assert not buckets.take_with_ahead("k:full", NOW, STEP, STEP, (refused,))
    assert _tat(pg_store, "k:full") == NOW + STEP
    # Answered in the take's round trip: `_rows` set, a second `result()` reads afresh.
    assert granted._rows is not None and refused._rows is not None
    assert granted.result() == [(42,)] and refused.result() == [(42,)]
