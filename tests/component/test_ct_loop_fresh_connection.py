"""`CtStore.add_many_now` runs on the event loop and must never wait: when the log's
write lock is not free this instant it answers None at once and the batch goes to a
worker thread. With no kept writer connection (the first batch after a failed one,
which drops it) and no idle connection in the pool, it opens a new one on the calling
thread, and a new SQLite connection's set-up (`PRAGMA journal_mode`, under the 30 s
busy timeout, retried) waits for another process that holds the file: the loop stalls
for as long as that process keeps it, every other request with it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[CtLog, Issuer, Path]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database("sqlite", tmp_path, "ct.db", prefix="acmekit_ct") as url:
        store = CtStore.from_url(url)
        settings = LogSettings(roots=(issuer.root_cert,), mmd=1.0)
        ctlog = CtLog(store, load_or_create_key(tmp_path), settings)
        yield ctlog, issuer, Path(url.removeprefix("sqlite:///"))
        store.close()


def test_a_write_that_must_not_wait_does_not_wait_for_a_new_connection(
    log: tuple[CtLog, Issuer, Path],
) -> None:
    ctlog, issuer, path = log
    inter = der(issuer.intermediate_cert)
    ctlog.add_chain([der(leaf_certificate(issuer, "warm.example")), inter], False)
    pending = ctlog.prepare([der(leaf_certificate(issuer, "next.example")), inter], False)
    # The state after a failed batch: the writer's connection dropped, none idle in the
    # pool.
    ctlog.store._writer._drop()
    ctlog.store.engine.dispose()
    # Another process holds the file.
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN IMMEDIATE")
    answered = threading.Event()
    outcome: list[object] = []

    def on_the_loop() -> None:
        try:
            outcome.append(ctlog.store.add_many_now([pending]))
        except Exception as exc:  # what it raised, for the assertion below
            outcome.append(exc)
        answered.set()

    loop = threading.Thread(target=on_the_loop, daemon=True)
    loop.start()
    try:
        # A call that does not wait answers long before this; the broken one waits out
        # the 30 s busy timeout (and then retries).
        returned = answered.wait(timeout=25)
    finally:
        other.execute("ROLLBACK")
        other.close()
        loop.join()
    assert returned, "add_many_now waited for the other process's lock"
    assert outcome == [None]  # nothing written on the loop; the worker thread's turn
