"""The CT log's store writes a batch of entries as multi-row INSERTs on PostgreSQL, seven
parameters an entry. PostgreSQL takes at most 65,535 parameters a statement, so a batch
of more than 9,362 new entries failed whole ("number of parameters must be between 0
and 65535"): every submission in it refused. The log's group commit writes 512 at most,
but `add_many` promised any number; it now writes them in parts, in one transaction.
Against a real database, each backend; duplicates inside the batch share one index."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.ct.store import CtStore, Pending, StoredEntry
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

ENTRIES = 9_400  # past 65,535 / 7


@pytest.fixture(params=BACKEND_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CtStore]:
    with fresh_database(request.param, tmp_path, "ct.db", prefix="acmekit_ctbatch") as url:
        s = CtStore.from_url(url)
        yield s
        s.close()


def _pending(n: int) -> Pending:
    identity = hashlib.sha256(b"entry %d" % n).digest()

    def seal(index: int) -> StoredEntry:
        leaf = b"leaf %d" % n
        return StoredEntry(identity, hashlib.sha256(leaf).digest(), n, leaf, b"", b"sct", index)

    return Pending(identity, seal)


def test_a_batch_past_the_parameter_limit_is_stored(store: CtStore) -> None:
    items = [_pending(n) for n in range(ENTRIES)] + [_pending(7), _pending(ENTRIES - 1)]
    stored = store.add_many(items)
    assert [e.seq for e in stored[:ENTRIES]] == list(range(ENTRIES))
    assert stored[ENTRIES].seq == 7 and stored[ENTRIES + 1].seq == ENTRIES - 1
    found = store.find(items[ENTRIES - 1].identity)
    assert found is not None and found.seq == ENTRIES - 1
