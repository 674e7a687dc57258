"""RFC 6962 §3.5: a signed tree head's timestamp "MUST be at least as recent as the most
recent SCT timestamp in the tree". The sequencer reads its clock before its transaction
has the write lock and reads the pending entries; a batch that commits in between (the
writer thread won the lock, or another process's writer did) has SCTs stamped after
that reading, and the head placing them must not be older than they are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key, now_ms
from acmekit.ct.store import CtStore
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.fixture(params=BACKEND_PARAMS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CtLog, Issuer]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database(request.param, tmp_path, "ct.db", prefix="acmekit_cthead") as url:
        store = CtStore.from_url(url)
        try:
            settings = LogSettings(roots=(issuer.root_cert,), mmd=60.0, batch=64)
            yield CtLog(store, load_or_create_key(tmp_path), settings), issuer
        finally:
            store.close()


def _later_than(ms: int) -> None:
    """Until the clock has passed `ms` (a millisecond at most)."""
    while now_ms() <= ms:
        pass


def test_a_head_is_as_recent_as_the_scts_it_places(log: tuple[CtLog, Issuer]) -> None:
    ctlog, issuer = log
    inter = der(issuer.intermediate_cert)
    # The sequencer's clock, read as `CtLog._sequence` reads it: before `sequence` waits
    # for the write lock.
    read = now_ms()
    _later_than(read)
    # Meanwhile a batch takes the lock first and commits.
    sct = ctlog.add_chain([der(leaf_certificate(issuer, "late.example")), inter], False)
    assert sct.timestamp > read
    assert ctlog.store.sequence(ctlog.sign_head, read, 64, 30_000) == 1
    head = ctlog.sth()
    assert head.head.tree_size == 1 and head.verify(ctlog.key.public_key())
    assert head.head.timestamp >= sct.timestamp


def test_a_head_for_a_larger_tree_is_more_recent_than_the_last(
    log: tuple[CtLog, Issuer],
) -> None:
    """§3.5: "Each subsequent timestamp MUST be more recent than the timestamp of the
    previous update." The last head was signed by a process whose clock runs ahead (the
    lease moved between hosts) or before this host's clock stepped back: the next head,
    for a larger tree, must still not carry the same timestamp as a different tree."""
    ctlog, issuer = log
    inter = der(issuer.intermediate_cert)
    ctlog.add_chain([der(leaf_certificate(issuer, "first.example")), inter], False)
    ahead = now_ms() + 5_000
    assert ctlog.store.sequence(ctlog.sign_head, ahead, 64, 30_000) == 1
    first = ctlog.sth().head
    ctlog.add_chain([der(leaf_certificate(issuer, "second.example")), inter], False)
    assert ctlog.store.sequence(ctlog.sign_head, now_ms(), 64, 30_000) == 1
    second = ctlog.sth().head
    assert (first.tree_size, second.tree_size) == (1, 2)
    assert second.timestamp > first.timestamp
