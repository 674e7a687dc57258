"""The CT log's submission batches are written, committed and synced on the store's
writer thread, never on the event loop: while a batch waits for its commit, the log
answers other requests (get-sth, get-entries, get-roots) on the same listener, and the
submitters of that batch get their SCTs only once it has committed. One thread writes
every batch, on SQLite and PostgreSQL, whoever submits. At close, a batch in flight is
finished and answered; a batch not yet begun is refused (an error, never an SCT)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from acmekit.ct.app import CtApp
from acmekit.ct.log import AsyncGroupCommit, CtLog, LogSettings, Unavailable, load_or_create_key
from acmekit.ct.schema import entries
from acmekit.ct.store import CtStore, WriterClosed
from acmekit.protocol import ct
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import (
    ca_hierarchy,
    chain_json,
    der,
    json_call,
    leaf_certificate,
    served_log,
)
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


def _body(chain: list[x509.Certificate]) -> bytes:
    return json.dumps(chain_json(chain)).encode()


class Hold:
    """The store's `before_commit`: records the thread of each batch's commit and, while
    armed, holds the batch there (its rows written, its index lock held, nothing
    committed) until released."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()
        self.threads: list[str] = []

    def __call__(self) -> None:
        self.threads.append(threading.current_thread().name)
        if self.armed:
            self.reached.set()
            self.release.wait(timeout=60)

    def let_go(self) -> None:
        self.armed = False
        self.release.set()


@dataclass(frozen=True)
class Log:
    ctlog: CtLog
    store: CtStore
    issuer: Issuer
    hold: Hold
    url: str  # the database's


@pytest.fixture(params=BACKEND_PARAMS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    issuer = ca_hierarchy(tmp_path / "ca")
    hold = Hold()
    with fresh_database(request.param, tmp_path, "ct.db", prefix="acmekit_ctwt") as url:
        store = CtStore.from_url(url, before_commit=hold)
        try:
            # A long MMD: on PostgreSQL a session idle in a transaction is ended after
            # the lease (a third of it), and a held batch waits inside its transaction.
            settings = LogSettings(roots=(issuer.root_cert,), mmd=60.0)
            ctlog = CtLog(store, load_or_create_key(tmp_path), settings)
            # The chain's issuers stored: what follows writes nothing but entries.
            ctlog.add_chain(_chain(issuer, "warm"), False)
            yield Log(ctlog, store, issuer, hold, url)
        finally:
            hold.let_go()
            store.close()
            store.engine.dispose()


def _chain(issuer: Issuer, name: str) -> list[bytes]:
    return [der(leaf_certificate(issuer, f"{name}.example")), der(issuer.intermediate_cert)]


def _stored(log: Log) -> int:
    """Entries committed, as another connection sees them."""
    with log.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(entries)).scalar_one())


def _closing(store: CtStore) -> bool:
    """Whether `close` has begun (nothing new is taken from then on), within 30 s."""
    for _ in range(3000):
        if store._writer._closed:
            return True
        time.sleep(0.01)
    return False


def test_reads_are_answered_while_a_batch_waits_for_its_commit(log: Log) -> None:
    ctlog, issuer, hold = log.ctlog, log.issuer, log.hold
    assert ctlog.sequence_once() == 1
    certs = [leaf_certificate(issuer, f"held{i}.example") for i in range(4)]
    with served_log(CtApp(ctlog)) as base, ThreadPoolExecutor(4) as pool:
        hold.armed = True
        posted = [
            pool.submit(json_call, base + "add-chain", _body([c, issuer.intermediate_cert]))
            for c in certs
        ]
        try:
            assert hold.reached.wait(30)  # a batch is written, its commit held
            # The same listener answers meanwhile, from memory and from the database.
            sth_status, sth = json_call(base + "get-sth")
            entries_status, got = json_call(base + "get-entries?start=0&end=0")
            roots_status, _ = json_call(base + "get-roots")
            answered_while_held = [f.done() for f in posted]
            committed_while_held = _stored(log)
        finally:
            hold.let_go()
        answers = [f.result(30) for f in posted]
    assert (sth_status, entries_status, roots_status) == (200, 200, 200)
    assert sth["tree_size"] == 1 and len(got["entries"]) == 1
    # No submitter was answered before its entry was committed.
    assert answered_while_held == [False] * 4 and committed_while_held == 1
    assert [status for status, _ in answers] == [200] * 4
    key = ctlog.key.public_key()
    scts = [ct.SignedCertificateTimestamp.from_json(doc) for _, doc in answers]
    for sct, cert in zip(scts, certs, strict=True):
        assert ct.verify_sct(sct, ct.SignedEntry.x509(der(cert)), key)
    indices = [ct.leaf_index_of(s.extensions) for s in scts]
    assert sorted(i for i in indices if i is not None) == [1, 2, 3, 4]
    # In index order the SCTs' timestamps never go back (each sealed under the lock).
    by_index = sorted(zip(indices, (s.timestamp for s in scts), strict=True))
    assert [t for _, t in by_index] == sorted(t for _, t in by_index)
    assert ctlog.sequence_once() == 4
    leaves = ctlog.entries(1, 4)
    assert [leaf.seq for leaf in leaves] == [1, 2, 3, 4]


def test_every_batch_is_written_on_the_writer_thread(log: Log) -> None:
    ctlog, issuer, hold = log.ctlog, log.issuer, log.hold
    with ThreadPoolExecutor(4) as pool:  # from other threads
        list(pool.map(lambda i: ctlog.add_chain(_chain(issuer, f"t{i}"), False), range(8)))

    async def on_the_loop() -> list[bytes]:
        chains = [_chain(issuer, f"l{i}") for i in range(8)]
        return await asyncio.gather(*[ctlog.add_chain_body_async(c, False) for c in chains])

    assert len(set(asyncio.run(on_the_loop()))) == 8
    assert len(hold.threads) >= 3  # the warm-up's, at least one from each side
    assert len(set(hold.threads)) == 1 and hold.threads[0].startswith("ct-writer")
    assert ctlog.sequence_once() == 17


def test_at_close_a_batch_in_flight_is_finished_and_a_later_one_refused(log: Log) -> None:
    ctlog, issuer, hold, store = log.ctlog, log.issuer, log.hold, log.store

    async def run() -> tuple[bytes, BaseException | bytes]:
        hold.armed = True
        first = asyncio.ensure_future(ctlog.add_chain_body_async(_chain(issuer, "a"), False))
        assert await asyncio.to_thread(hold.reached.wait, 30)
        # Queued behind the held batch, for the next one.
        second = asyncio.ensure_future(ctlog.add_chain_body_async(_chain(issuer, "b"), False))
        closing = asyncio.ensure_future(asyncio.to_thread(store.close))
        assert await asyncio.to_thread(_closing, store)
        hold.let_go()
        await closing  # returns once the batch in flight has committed
        later = (await asyncio.gather(second, return_exceptions=True))[0]
        return await first, later

    body, later = asyncio.run(run())
    assert isinstance(later, Unavailable)
    sct = ct.SignedCertificateTimestamp.from_json(json.loads(body))
    assert ct.leaf_index_of(sct.extensions) == 1
    # What was answered is stored; what was refused is not.
    again = CtStore.from_url(log.url)
    try:
        with again.engine.connect() as conn:
            rows = conn.execute(sa.select(entries.c.seq, entries.c.timestamp)).all()
    finally:
        again.close()
        again.engine.dispose()
    assert sorted(seq for seq, _ in rows) == [0, 1] and (1, sct.timestamp) in rows


def test_a_drain_cut_off_fails_its_waiters_and_the_queued_ones() -> None:
    """The loop stopping cancels the drain task while its batch is out: neither that
    batch's submitters nor those queued behind it are left waiting or answered."""

    async def run() -> list[BaseException | int]:
        never = asyncio.Event()

        async def write(items: list[int]) -> list[int]:
            await never.wait()
            return items

        group: AsyncGroupCommit[int, int] = AsyncGroupCommit(write)
        first = asyncio.ensure_future(group.submit(1))
        await asyncio.sleep(0)  # the drain task starts and hands its batch over
        await asyncio.sleep(0)
        second = asyncio.ensure_future(group.submit(2))
        await asyncio.sleep(0)
        assert group._task is not None
        group._task.cancel()
        return await asyncio.gather(first, second, return_exceptions=True)

    outcomes = asyncio.run(run())
    assert [type(o) for o in outcomes] == [WriterClosed, WriterClosed]
