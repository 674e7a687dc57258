"""A batch that fails after its rows are written, its transaction still open (an error
at commit after which SQLite did not roll back by itself: it does for some errors, and
its documentation asks for an explicit ROLLBACK after any; a drill's `before_commit`
failing), releases the log's index lock at once: the sequencer and the next batch are
not kept waiting. On SQLite the writer's connection was closed with its cursor still
alive (the error that reaches the batch's submitters holds it in its traceback until the
garbage collector frees it), and SQLite closes a connection whose statements are not all
finalized (Python's `executemany` leaves its statement so) only once they are: until
then its transaction, and with it the write lock, stayed open."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.schema import entries
from acmekit.ct.store import _INDEX_LOCK, CtStore
from acmekit.protocol import ct
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


class FailOnce:
    """`before_commit`: while armed, fails the batch, its rows written, as its commit
    would on a full disk."""

    def __init__(self, sqlite: bool) -> None:
        self.armed = False
        self.error = sqlite3.OperationalError if sqlite else psycopg.OperationalError

    def __call__(self) -> None:
        if self.armed:
            self.armed = False
            raise self.error("database or disk is full")


@pytest.fixture(params=BACKEND_PARAMS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CtLog, Issuer, FailOnce]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    fail = FailOnce(request.param == "sqlite")
    with fresh_database(request.param, tmp_path, "ct.db", prefix="acmekit_ctfail") as url:
        store = CtStore.from_url(url, before_commit=fail)
        try:
            settings = LogSettings(roots=(issuer.root_cert,), mmd=60.0)
            yield CtLog(store, load_or_create_key(tmp_path), settings), issuer, fail
        finally:
            store.close()


def _index_lock_free(store: CtStore) -> bool:
    """Whether another connection gets the index lock without waiting."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        other = sqlite3.connect(str(url.database), timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.rollback()
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            other.close()
    with store.engine.begin() as conn:
        return bool(
            conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_INDEX_LOCK))).scalar()
        )


def test_a_failed_batch_releases_the_index_lock(log: tuple[CtLog, Issuer, FailOnce]) -> None:
    ctlog, issuer, fail = log
    inter = der(issuer.intermediate_cert)
    ctlog.add_chain([der(leaf_certificate(issuer, "warm.example")), inter], False)
    fail.armed = True
    with pytest.raises(fail.error) as failed:
        ctlog.add_chain([der(leaf_certificate(issuer, "failed.example")), inter], False)
    # The error is still referenced here, as the submitters' futures hold it.
    assert failed.value is not None
    assert _index_lock_free(ctlog.store)
    sct = ctlog.add_chain([der(leaf_certificate(issuer, "next.example")), inter], False)
    assert ct.leaf_index_of(sct.extensions) == 1
    assert ctlog.sequence_once() == 2
    with ctlog.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar_one() == 2
