"""The log in process, on SQLite and PostgreSQL: 300 entries in batches, their tiles at
two levels (full and partial) against hashes computed from the entries, a fresh head
without new entries, and the lease kept by one holder until it expires."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.ct import merkle
from acmekit.ct.log import CtLog, LogSettings, load_or_create_key, now_ms
from acmekit.ct.schema import entries
from acmekit.ct.store import CtStore
from acmekit.ct.tiles import TileReader
from acmekit.database import create_engine
from acmekit.protocol import ct
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.fixture(params=BACKEND_PARAMS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CtLog, Issuer]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database(request.param, tmp_path, "ct.db", prefix="acmekit_ct") as url:
        store = CtStore.from_url(url)
        # An MMD of a minute: the tests call the sequencer themselves and wait for no
        # merge, and on PostgreSQL the lease (a third of the MMD) is also how long the
        # server lets a session sit idle inside a transaction (end_stalled_sessions).
        # With an MMD of 1 s that was 333 ms, and a loaded machine's pause between two
        # statements of one sequencing pass ended the session, failing the test.
        settings = LogSettings(roots=(issuer.root_cert,), mmd=60.0, batch=64)
        yield CtLog(store, load_or_create_key(tmp_path), settings), issuer
        store.close()


def mth(hashes: list[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = merkle.split_point(len(hashes))
    return merkle.node_hash(mth(hashes[:k]), mth(hashes[k:]))


def test_three_hundred_entries_make_full_and_partial_tiles(log: tuple[CtLog, Issuer]) -> None:
    ctlog, issuer = log
    inter = der(issuer.intermediate_cert)
    for i in range(300):
        cert = leaf_certificate(issuer, f"e{i}.example", precert=i % 3 == 0)
        ctlog.add_chain([der(cert), inter], precert=i % 3 == 0)
    assert ctlog.sequence_once() == 300
    head = ctlog.sth().head
    assert head.tree_size == 300
    leaves = ctlog.entries(0, 299)
    assert [e.seq for e in leaves] == list(range(300))
    hashes = [merkle.leaf_hash(e.leaf_input) for e in leaves]
    assert mth(hashes) == head.root_hash

    tiles = TileReader(ctlog, "127.0.0.1:1")
    status, _, full = tiles.answer("/tile/0/000") or (0, "", b"")
    assert status == 200 and full == b"".join(hashes[:256])
    status, _, partial = tiles.answer("/tile/0/001.p/44") or (0, "", b"")
    assert status == 200 and partial == b"".join(hashes[256:])
    status, _, upper = tiles.answer("/tile/1/000.p/1") or (0, "", b"")
    assert status == 200 and upper == mth(hashes[:256])
    assert (tiles.answer("/tile/0/001") or (0,))[0] == 404
    assert (tiles.answer("/tile/0/001.p/45") or (0,))[0] == 404
    status, _, data = tiles.answer("/tile/data/001.p/44") or (0, "", b"")
    assert status == 200 and len(data) > 44 * 32

    # the proof of the last entry, from stored nodes, verifies against the head
    proof = ctlog.store.range_hashes(merkle.inclusion_ranges(299, 300))
    assert merkle.verify_inclusion(hashes[299], 299, 300, proof, head.root_hash)


def test_an_idle_log_signs_fresh_heads_and_keeps_its_lease(log: tuple[CtLog, Issuer]) -> None:
    ctlog, _ = log
    first = ctlog.sth()
    assert ctlog.sequence_once() == 0
    # with nothing new, a head half the MMD old is signed again, for the same tree
    ctlog.store.sequence(ctlog.sign_head, first.head.timestamp + 600, 64, 500)
    again = ctlog.sth()
    assert again.head.timestamp == first.head.timestamp + 600
    assert (again.head.tree_size, again.head.root_hash) == (0, merkle.EMPTY_ROOT)
    assert again.verify(ctlog.key.public_key())

    t = now_ms() + ctlog.lease_ms + 1  # after the lease sequence_once took has expired
    assert ctlog.store.take_lease("a", t, 1000)
    assert not ctlog.store.take_lease("b", t + 500, 1000)
    assert ctlog.store.take_lease("a", t + 900, 1000)  # renewed by its holder
    assert not ctlog.store.take_lease("b", t + 1800, 1000)
    assert ctlog.store.take_lease("b", t + 2000, 1000)  # expired: taken over
    assert ctlog.store.lease_holder() == "b"


def test_two_processes_hand_out_consecutive_indices(
    log: tuple[CtLog, Issuer], tmp_path: Path
) -> None:
    """Two logs on one database (two stores, two pools, as two processes have) submit at
    once from several threads: every SCT's leaf_index is its entry's `seq`, the indices
    are 0..n-1 with no gap or repeat, and the sequencer places them all."""
    first, issuer = log
    other_store = CtStore(create_engine(str(first.store.engine.url)))
    second = CtLog(other_store, first.key, first.settings)
    inter = der(issuer.intermediate_cert)
    certs = [der(leaf_certificate(issuer, f"two{i}.example")) for i in range(60)]
    try:
        with ThreadPoolExecutor(6) as pool:
            scts = list(
                pool.map(
                    lambda ic: (first if ic[0] % 2 else second).add_chain([ic[1], inter], False),
                    enumerate(certs),
                )
            )
        indices = [ct.leaf_index_of(s.extensions) for s in scts]
        assert sorted(i for i in indices if i is not None) == list(range(60))
        assert first.sequence_once() == 60
        leaves = first.entries(0, 59)
        for sct, cert, index in zip(scts, certs, indices, strict=True):
            assert index is not None
            stamped = ct.parse_merkle_tree_leaf(leaves[index].leaf_input)
            assert stamped.entry == ct.SignedEntry.x509(cert)
            assert stamped.extensions == sct.extensions
    finally:
        other_store.close()


def test_entries_stored_without_an_index_get_the_next_ones_at_start(
    log: tuple[CtLog, Issuer],
) -> None:
    """An entry an earlier version stored unsequenced (no index, no extension) is given
    the next index when a log starts, and placed after those that had one."""
    ctlog, issuer = log
    inter = der(issuer.intermediate_cert)
    ctlog.add_chain([der(leaf_certificate(issuer, "indexed.example")), inter], False)
    old = ct.SignedEntry.x509(der(leaf_certificate(issuer, "old.example")))
    leaf = ct.merkle_tree_leaf(ct.TimestampedEntry(now_ms(), old))
    with ctlog.store.engine.begin() as conn:
        conn.execute(
            sa.insert(entries).values(
                identity=old.identity(),
                leaf_hash=merkle.leaf_hash(leaf),
                timestamp=1,
                leaf_input=leaf,
                extra_data=b"\0\0\0",
                sct_signature=b"",
                seq=None,
            )
        )
    restarted = CtLog(ctlog.store, ctlog.key, ctlog.settings)
    assert restarted.store.find(old.identity()).seq == 1  # type: ignore[union-attr]
    assert restarted.sequence_once() == 2
    (placed,) = restarted.entries(1, 1)
    assert placed.leaf_input == leaf
