"""A submission batch written on the event loop: with SQLite, when the log's write lock
is free this instant, the batch is written where the submissions were checked (no hop
to a worker thread and back); when another connection holds the lock (the sequencer,
another process), nothing is written on the loop, which goes on serving, and the batch
waits its turn in a worker thread as before. Either way each submitter gets its SCT only
once its entry is committed, and the same entry gets the same SCT."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore, Pending, StoredEntry
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


def _chains(issuer: Issuer, prefix: str, n: int) -> list[list[bytes]]:
    inter = der(issuer.intermediate_cert)
    return [[der(leaf_certificate(issuer, f"{prefix}{i}.example")), inter] for i in range(n)]


def _writer_threads(ctlog: CtLog, record: list[str]) -> None:
    """Record, for each batch the store writes, the thread it is written on."""
    write = ctlog.store.add_many

    def recorded(items: Sequence[Pending], wait: bool = True) -> list[StoredEntry]:
        record.append(threading.current_thread().name)
        return write(items, wait)

    ctlog.store.add_many = recorded  # type: ignore[method-assign]


def test_with_the_lock_free_a_batch_is_written_on_the_loop(
    log: tuple[CtLog, Issuer, Path],
) -> None:
    ctlog, issuer, _ = log
    first, chains = _chains(issuer, "warm", 1)[0], _chains(issuer, "free", 6)
    ctlog.add_chain(first, False)  # the issuers stored: nothing left but the entries
    threads: list[str] = []
    _writer_threads(ctlog, threads)

    async def submit() -> tuple[list[bytes], str]:
        bodies = await asyncio.gather(*[ctlog.add_chain_body_async(c, False) for c in chains])
        return bodies, threading.current_thread().name

    bodies, loop_thread = asyncio.run(submit())
    assert threads and set(threads) == {loop_thread}
    assert len(set(bodies)) == 6
    assert ctlog.sequence_once() == 7
    # the same entries again: their first SCTs, still written (looked up) on the loop
    assert asyncio.run(submit())[0] == bodies


def test_with_the_lock_held_elsewhere_the_loop_goes_on_and_the_batch_waits(
    log: tuple[CtLog, Issuer, Path],
) -> None:
    ctlog, issuer, path = log
    ctlog.add_chain(_chains(issuer, "warm", 1)[0], False)
    chains = _chains(issuer, "held", 4)
    threads: list[str] = []
    _writer_threads(ctlog, threads)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction

    async def run() -> tuple[list[bytes], int, str]:
        submitted = asyncio.gather(*[ctlog.add_chain_body_async(c, False) for c in chains])
        turns = 0
        # The loop is not blocked while the lock is held: it keeps taking turns, and
        # the submissions wait (nothing committed, no SCT given).
        while turns < 50:
            await asyncio.sleep(0.01)
            turns += 1
            assert not submitted.done()
        other.execute("COMMIT")
        return await submitted, turns, threading.current_thread().name

    try:
        bodies, turns, loop_thread = asyncio.run(run())
    finally:
        other.close()
    assert turns == 50 and len(set(bodies)) == 4
    # tried on the loop (refused at once), then written in a worker thread
    assert threads[0] == loop_thread and threads[-1] != loop_thread
    assert ctlog.sequence_once() == 5
    # the writer's connection waits out a held lock again, as before the try
    writer = ctlog.store._writer
    with writer.transaction() as cur:
        cur.execute("PRAGMA busy_timeout")
        assert cur.fetchone()[0] == writer._busy_ms > 0


def test_a_chain_whose_issuers_are_not_stored_is_not_written_on_the_loop(
    log: tuple[CtLog, Issuer, Path],
) -> None:
    ctlog, issuer, _ = log
    pending = [ctlog.prepare(c, False) for c in _chains(issuer, "new", 2)]
    assert ctlog.store.add_many_now(pending) is None  # the issuers' insert may wait
    stored = ctlog.store.add_many(pending)
    assert [e.seq for e in stored] == [0, 1]
    again = ctlog.store.add_many_now(pending)  # known now, and the lock is free
    assert again == stored


# `CtStore.add_many_now` runs on the event loop and must never wait: when the log's
# write lock is not free this instant it answers None at once and the batch goes to a
# worker thread. With no kept writer connection (the first batch after a failed one,
# which drops it) and no idle connection in the pool, it opens a new one on the calling
# thread, and a new SQLite connection's set-up (`PRAGMA journal_mode`, under the 30 s
# busy timeout, retried) waits for another process that holds the file: the loop stalls
# for as long as that process keeps it, every other request with it.
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
