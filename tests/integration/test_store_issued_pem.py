"""The store's per-request shortcuts, and that none of them serves what the database does
not hold.

- A certificate this store recorded is downloaded from memory; any other (recorded by
  another process, or not signed yet) is read from the database.
- On SQLite the thread's cursor is kept between blocks: a read must still see what
  another connection (another process) committed since, and a failed write must leave
  nothing behind.
- Without issuance limits to take, finalize's claim is one statement, on PostgreSQL in
  autocommit (no explicit transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.protocol.messages import AccountStatus, Identifier, IdentifierType
from acmekit.server.records import AccountRecord, CertificateRecord, OrderRecord
from acmekit.server.store import Store
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.sqlcount import SqlCount, counting
from acmekit_testkit.tiers import BACKEND_PARAMS

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NAME = Identifier(IdentifierType.DNS, "pem.example")


@pytest.fixture(params=BACKEND_PARAMS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, "pem.db") as found:
        yield found


@pytest.fixture
def counted(url: str) -> Iterator[tuple[Store, Store, SqlCount]]:
    """Two stores over one database, as two CA processes; the first one's SQL counted."""
    with counting() as count:
        one = Store.from_url(url)
        other = Store.from_url(url)
        yield one, other, count
        one.engine.dispose()
        other.engine.dispose()


def _claimed_order(store: Store, order_id: str) -> CertificateRecord:
    """An order claimed for finalize, with its certificate's serial reserved."""
    order = OrderRecord(order_id, "acct", (NAME,), (), NOW + timedelta(days=1), NOW)
    store.orders.add_order(order, [])
    rec = CertificateRecord(
        f"cert-{order_id}", order_id.encode().hex(), order_id, "acct", None, (NAME,),
        NOW, NOW + timedelta(days=90), NOW,
    )  # fmt: skip
    assert store.orders.claim_finalize(order_id, b"csr", NOW, rec)
    return rec


def test_a_recorded_certificate_is_downloaded_without_a_statement(
    counted: tuple[Store, Store, SqlCount],
) -> None:
    store, other, count = counted
    rec = _claimed_order(store, "o1")
    assert store.certificates.pem(rec.id) is None  # reserved, not signed yet
    assert other.certificates.pem(rec.id) is None
    assert store.certificates.record_issued(rec.id, "o1", "PEM one")
    mark = count.mark()
    assert store.certificates.pem(rec.id) == "PEM one"
    assert count.since(mark)[0] == 0
    assert other.certificates.pem(rec.id) == "PEM one"  # the other process reads it
    assert store.certificates.pem("no-such-certificate") is None


def test_a_certificate_recorded_elsewhere_is_read_from_the_database(
    counted: tuple[Store, Store, SqlCount],
) -> None:
    store, other, count = counted
    rec = _claimed_order(other, "o2")
    assert other.certificates.record_issued(rec.id, "o2", "PEM two")
    mark = count.mark()
    assert store.certificates.pem(rec.id) == "PEM two"
    assert count.since(mark)[0] == 1


def test_a_certificate_that_lost_its_order_is_not_kept(
    counted: tuple[Store, Store, SqlCount],
) -> None:
    store, _other, _count = counted
    rec = _claimed_order(store, "o3")
    assert store.certificates.record_issued(rec.id, "o3", "PEM first")
    late = CertificateRecord(
        "cert-late", "abc", "o3", "acct", None, (NAME,), NOW, NOW + timedelta(days=90), NOW
    )
    store.certificates.reserve_serial(late)
    # the order has its certificate: this one's serial is abandoned, its PEM not stored
    assert not store.certificates.record_issued(late.id, "o3", "PEM late")
    assert store.certificates.pem(late.id) is None


def test_the_claim_without_limits_is_one_statement(
    counted: tuple[Store, Store, SqlCount], url: str
) -> None:
    store, _other, count = counted
    order = OrderRecord("o4", "acct", (NAME,), (), NOW + timedelta(days=1), NOW)
    store.orders.add_order(order, [])
    rec = CertificateRecord(
        "cert-o4", "a4", "o4", "acct", None, (NAME,), NOW, NOW + timedelta(days=90), NOW
    )
    mark = count.mark()
    assert store.orders.claim_finalize("o4", b"csr", NOW, rec)
    statements, transactions = count.since(mark)
    if url.startswith("postgresql"):
        assert (statements, transactions) == (1, 0)  # autocommit
    else:
        assert (statements, transactions) == (2, 1)  # the claim and the reservation
    assert not store.orders.claim_finalize("o4", b"csr", NOW, rec)  # claimed once


def _account(status: AccountStatus) -> AccountRecord:
    return AccountRecord(
        id="acct",
        thumbprint="t" * 43,
        jwk={"kty": "EC", "crv": "P-256", "x": "x" * 43, "y": "y" * 43},
        contact=(),
        status=status,
        created=NOW,
    )


def test_a_kept_cursor_sees_what_another_connection_committed(
    counted: tuple[Store, Store, SqlCount],
) -> None:
    store, other, _count = counted
    store.accounts.add_account(_account(AccountStatus.VALID))
    before = store.accounts.account("acct")
    assert before is not None and before.status == AccountStatus.VALID
    other.accounts.update_account("acct", status=AccountStatus.DEACTIVATED)
    after = store.accounts.account("acct")
    assert after is not None and after.status == AccountStatus.DEACTIVATED


def test_a_failed_write_leaves_nothing_and_the_cursor_usable(
    counted: tuple[Store, Store, SqlCount],
) -> None:
    store, other, _count = counted
    with pytest.raises(store.db.integrity), store.db.raw() as c:
        c.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("k", "1"))
        c.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("k", "2"))
    assert other.accounts.stored_setting("k") is None
    with store.db.raw() as c:
        c.run("INSERT INTO settings (name, value) VALUES (?, ?)", ("k", "3"))
        assert c.one("SELECT value FROM settings WHERE name = ?", ("k",))[0] == "3"
    assert other.accounts.stored_setting("k") == "3"
