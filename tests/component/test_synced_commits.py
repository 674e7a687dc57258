"""On SQLite (WAL, synchronous=NORMAL) a commit survives the process's crash but not the
machine's until the WAL is next synced. The commits after which something exists outside
the CA or the log sync the WAL themselves, and no other commit does: observed as the
system calls the process makes (strace), between markers the script leaves in the trace
(an rmdir of a path that does not exist), counting the syncs of the database's WAL file.

CA: the precertificate kept before the logs see it, the issued certificate's record,
a revocation, a blocked key and a stored CRL each sync once; the account, the order, the
challenge, finalize's claim with the serial's reservation and a later lone write do not
(the certificate's sync covers the claim committed before it). CT log: each batch of
submissions and each new signed tree head syncs once; storing a chain's issuers and a
pass with nothing to sign do not."""

from __future__ import annotations

from collections import Counter

import pytest

from acmekit_testkit.syscalls import SYNCS, syncs_by_phase, traced

SCRIPT = r"""
from datetime import UTC, datetime, timedelta

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore
from acmekit.protocol.messages import (
    AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier,
    IdentifierType,
)
from acmekit.server import records
from acmekit.server.store import Store
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.pendingorders import stored_account


store = Store.from_url(f"sqlite:///{work / 'ca.db'}")
now = datetime.now(UTC)
mark("account")
acct = stored_account(store, now)
name = Identifier(IdentifierType.DNS, "synced.example.test")
ch = records.ChallengeRecord("ch", "az", ChallengeType.HTTP_01, "tok", ChallengeStatus.PENDING)
authz = records.AuthorizationRecord(
    "az", acct.id, name, False, AuthorizationStatus.PENDING, now + timedelta(days=7), (ch,)
)
mark("order")
store.orders.add_order(
    records.OrderRecord("o", acct.id, (name,), ("az",), now + timedelta(days=1), now), [authz]
)
mark("challenge")
store.orders.start_challenge("ch", now, "https://ca.example.test/acct/acct")
store.orders.finish_challenge(
    "ch", now, None, now + timedelta(days=30), records.ValidationEvidence()
)
rec = records.CertificateRecord(
    "c", "5eed", "o", acct.id, None, (name,), now, now + timedelta(days=90), now
)
mark("claim")
assert store.orders.claim_finalize("o", b"csr", now, rec)
mark("precert")
store.certificates.record_precert("c", b"precert")
mark("issued")
assert store.certificates.record_issued("c", "o", "PEM")
mark("ari")
store.certificates.move_ari_window("c", now)
mark("revoke")
assert store.certificates.revoke("c", 1, now)
mark("block")
store.certificates.block_key("ab" * 32, now, "5eed")
mark("crl")
assert store.certificates.save_crl(records.CrlRecord(0, 1, now, b"crl"))
mark("ca-end")
store.engine.dispose()

issuer = ca_hierarchy(work / "ca")
ct = CtStore.from_url(f"sqlite:///{work / 'ct.db'}")
log = CtLog(ct, load_or_create_key(work), LogSettings(roots=(issuer.root_cert,), mmd=1.0))
inter = der(issuer.intermediate_cert)
chains = [[der(leaf_certificate(issuer, f"s{i}.example")), inter] for i in range(3)]
log.add_chain(chains[0], False)  # the issuers stored the first time
mark("batch")
log.add_chain(chains[1], False)
mark("batch2")
log.add_chain(chains[2], False)
mark("sequence")
assert log.sequence_once() == 3
mark("idle-pass")
assert log.sequence_once() == 0
mark("ct-end")
ct.close()
"""

DIRECTORY = "synced-store"


@pytest.fixture(scope="module")
def phases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter[str]]:
    work = tmp_path_factory.mktemp(DIRECTORY, numbered=False)
    return syncs_by_phase(traced(work, SCRIPT, SYNCS))


@pytest.mark.parametrize(
    ("phase", "wal", "synced"),
    [
        ("account", "ca.db-wal", 0),
        ("order", "ca.db-wal", 0),
        ("challenge", "ca.db-wal", 0),
        ("claim", "ca.db-wal", 0),
        ("precert", "ca.db-wal", 1),
        ("issued", "ca.db-wal", 1),
        ("ari", "ca.db-wal", 0),
        ("revoke", "ca.db-wal", 1),
        ("block", "ca.db-wal", 1),
        ("crl", "ca.db-wal", 1),
        ("batch", "ct.db-wal", 1),
        ("batch2", "ct.db-wal", 1),
        ("sequence", "ct.db-wal", 1),
        ("idle-pass", "ct.db-wal", 0),
    ],
)
def test_the_wal_is_synced_at_exactly_these_commits(
    phases: dict[str, Counter[str]], phase: str, wal: str, synced: int
) -> None:
    found = phases[phase]
    assert found[wal] == synced, found
    # Nothing else synced in between: no checkpoint (the database file), no journal.
    # The one exception is the directory, which SQLite syncs with a connection's first
    # synced write to the WAL it opened (so a WAL file made since is found after a
    # power loss): once a connection, not a commit.
    others = {name for name in found if name != wal and name != DIRECTORY}
    assert not others, found
