"""Two processes of one log on one PostgreSQL database store the issuers of the chains
they accept in `ct_issuers` (static-ct-api's `issuer/<sha256>`). When both meet new
issuers at once and share one of them (two intermediates under one root: the log adds
the root to each chain), the one that inserts second finds that one stored by the other
meanwhile; its other, new issuer must still be stored, or an entry refers to an issuer
the log cannot serve."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.schema import issuers
from acmekit.ct.store import CtStore
from acmekit.database import create_engine
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_postgres_database
from acmekit_testkit.tiers import require_postgres_or_skip

pytestmark = pytest.mark.postgres


def _waiting_on_a_lock(url: str) -> bool:
    """Whether a session of the database waits for a lock in an insert of issuers."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO ct_issuers%'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return bool(found)


def test_an_issuer_stored_meanwhile_by_another_process_loses_none(tmp_path: Path) -> None:
    require_postgres_or_skip()
    issuer = ca_hierarchy(tmp_path / "ca")
    root_der = der(issuer.root_cert)
    with fresh_postgres_database("acmekit_ctrace") as url:
        store = CtStore.from_url(url)
        other = create_engine(url)
        try:
            ctlog = CtLog(
                store, load_or_create_key(tmp_path), LogSettings((issuer.root_cert,), mmd=60.0)
            )
            # The other process has inserted the root (with its own intermediate), not
            # yet committed: this one does not see it, and its insert waits for it.
            with other.connect() as conn:
                trans = conn.begin()
                conn.execute(
                    issuers.insert().values(sha256=hashlib.sha256(root_der).digest(), der=root_der)
                )
                chain = [der(leaf_certificate(issuer, "a.example")), der(issuer.intermediate_cert)]
                answered: list[object] = []
                submitted = threading.Thread(
                    target=lambda: answered.append(ctlog.add_chain(chain, False))
                )
                submitted.start()
                for _ in range(3000):
                    if _waiting_on_a_lock(url):
                        break
                    time.sleep(0.01)
                trans.commit()
            submitted.join(30)
            assert len(answered) == 1  # an SCT
            inter_hash = hashlib.sha256(der(issuer.intermediate_cert)).digest()
            assert store.issuer(hashlib.sha256(root_der).digest()) == root_der
            assert store.issuer(inter_hash) == der(issuer.intermediate_cert)
        finally:
            other.dispose()
            store.close()
