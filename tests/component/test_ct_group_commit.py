"""Group commit in the log: submissions arriving together are written in one
transaction, each caller answered only after its own batch is written; duplicates
(within one batch and across batches) get the first SCT; concurrent submissions
through the log on SQLite and PostgreSQL all end up stored and sequenced once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from acmekit.ct.log import AsyncGroupCommit, CtLog, GroupCommit, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore, Pending, StoredEntry
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.fixture(params=BACKEND_PARAMS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CtLog, Issuer]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database(request.param, tmp_path, "ct.db", prefix="acmekit_ctgc") as url:
        store = CtStore.from_url(url)
        # a minute: on PostgreSQL a third of it bounds a session's idle time inside a
        # transaction, and 333 ms (an MMD of 1 s) was short of a loaded machine's pauses
        settings = LogSettings(roots=(issuer.root_cert,), mmd=60.0)
        yield CtLog(store, load_or_create_key(tmp_path), settings), issuer
        store.close()


def test_waiting_submissions_are_written_together() -> None:
    first_started = threading.Event()
    release = threading.Event()
    batches: list[list[int]] = []

    def write(items: list[int]) -> Sequence[int]:
        batches.append(list(items))
        if len(batches) == 1:
            first_started.set()
            release.wait(10)
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(write)
    with ThreadPoolExecutor(9) as pool:
        head = pool.submit(group.submit, 0)
        assert first_started.wait(10)
        rest = [pool.submit(group.submit, i) for i in range(1, 9)]
        while len(group._queue) < 8:  # all eight queued behind the first write
            threading.Event().wait(0.01)
        release.set()
        assert head.result() == 0
        assert [f.result() for f in rest] == [i * 10 for i in range(1, 9)]
    assert batches[0] == [0]
    assert sorted(batches[1]) == list(range(1, 9))  # the eight in one transaction
    assert len(batches) == 2


def test_a_failed_write_fails_every_submission_of_its_batch() -> None:
    def write(items: list[int]) -> Sequence[int]:
        raise ConnectionError("database gone")

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(ConnectionError):
        group.submit(1)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(group.submit, i) for i in range(4)]
        for f in futures:
            with pytest.raises(ConnectionError):
                f.result()


def entry(identity: bytes, stamp: int) -> Pending:
    def seal(index: int) -> StoredEntry:
        return StoredEntry(
            identity, identity * 1, stamp, b"leaf" + identity, b"", b"sig%d" % stamp, index
        )

    return Pending(identity, seal)


def test_duplicates_in_and_across_batches_get_the_first(log: tuple[CtLog, Issuer]) -> None:
    store = log[0].store
    a1, a2, b1, b2 = (
        entry(b"a" * 32, 1),
        entry(b"a" * 32, 2),
        entry(b"b" * 32, 3),
        entry(b"b" * 32, 4),
    )
    first = store.add_many([a1, a2, b1])
    assert first == [a1.seal(0), a1.seal(0), b1.seal(1)]
    found = store.add_many([b2, entry(b"c" * 32, 5)])
    assert found[0].timestamp == 3 and found[0].sct_signature == b"sig3"
    assert found[0].seq == 1
    # a duplicate takes no index: the new entry gets the next one, with no gap
    assert found[1].timestamp == 5 and found[1].seq == 2


def test_concurrent_submissions_each_stored_once(log: tuple[CtLog, Issuer]) -> None:
    ctlog, issuer = log
    inter = der(issuer.intermediate_cert)
    certs = [der(leaf_certificate(issuer, f"g{i}.example", precert=True)) for i in range(40)]
    # every certificate twice, from different threads at once
    with ThreadPoolExecutor(8) as pool:
        scts = list(pool.map(lambda c: ctlog.add_chain([c, inter], True), certs + certs))
    first, again = scts[:40], scts[40:]
    assert [s.timestamp for s in first] == [s.timestamp for s in again]
    assert [s.signature for s in first] == [s.signature for s in again]
    assert ctlog.sequence_once() == 40
    assert ctlog.sth().head.tree_size == 40


def test_on_the_event_loop_submissions_queue_behind_the_running_write() -> None:
    """AsyncGroupCommit: what arrives while a batch is written in the worker thread goes
    in the next batch; a failed write fails exactly its own batch, and the next batch is
    written as usual."""
    release, started = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def write(items: list[int]) -> Sequence[int]:
        batches.append(list(items))
        if len(batches) == 1:
            started.set()
            release.wait(10)
        if -1 in items:
            raise ConnectionError("database gone")
        return [i * 10 for i in items]

    async def run() -> None:
        group: AsyncGroupCommit[int, int] = AsyncGroupCommit(
            lambda items: asyncio.to_thread(write, items)
        )
        head = asyncio.ensure_future(group.submit(0))
        assert await asyncio.to_thread(started.wait, 10)  # the first write, in its thread
        rest = [asyncio.ensure_future(group.submit(i)) for i in range(1, 9)]
        bad = asyncio.ensure_future(group.submit(-1))
        await asyncio.sleep(0)  # one turn: the nine queue
        assert len(group._queue) == 9
        release.set()
        assert await head == 0
        with pytest.raises(ConnectionError):
            await bad
        for f in rest:  # the same batch as the failing item: failed with it
            with pytest.raises(ConnectionError):
                await f
        assert await group.submit(5) == 50  # a later batch is written again

    asyncio.run(run())
    assert batches[0] == [0]
    assert sorted(batches[1]) == [-1, *range(1, 9)]
    assert batches[2] == [5]
