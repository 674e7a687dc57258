"""On SQLite (WAL, synchronous=NORMAL) a commit survives the process's crash but not the
machine's until the WAL is next synced. An account's key rollover (RFC 8555 §7.3.5), its
deactivation (§7.3.6, by its client or the operator) and an EAB key's revocation are
answered and then relied on outside the CA: lost with the power, they would hand the
account back to a key its holder replaced, perhaps as stolen, or let a revoked EAB key
bind an account. Each syncs the WAL once; a contact update does not. Observed as the
process's syncs (strace) between markers (an rmdir of a path that does not exist)."""

from __future__ import annotations

from collections import Counter

import pytest

from acmekit_testkit.syscalls import SYNCS, syncs_by_phase, traced

SCRIPT = r"""
from datetime import UTC, datetime

from acmekit.protocol.messages import AccountStatus
from acmekit.server import records
from acmekit.server.store import Store
from acmekit_testkit.pendingorders import stored_account


store = Store.from_url(f"sqlite:///{work / 'ca.db'}")
now = datetime.now(UTC)
acct = stored_account(store, now)
jwk = acct.jwk
assert store.accounts.add_eab_key(records.EabKey("kid", "k" * 43, now))
mark("contact")
store.accounts.update_account(acct.id, contact=["mailto:a@example.test"])
mark("rollover")
assert store.accounts.change_account_key(acct.id, {**jwk, "x": "z" * 43}, "u" * 43, now)
mark("deactivate")
store.accounts.update_account(acct.id, status=AccountStatus.DEACTIVATED)
mark("eab-revoke")
assert store.accounts.revoke_eab_key("kid", now)
mark("end")
store.engine.dispose()
"""


@pytest.fixture(scope="module")
def phases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter[str]]:
    work = tmp_path_factory.mktemp("account-synced", numbered=False)
    return syncs_by_phase(traced(work, SCRIPT, SYNCS))


@pytest.mark.parametrize(
    ("phase", "synced"),
    [("contact", 0), ("rollover", 1), ("deactivate", 1), ("eab-revoke", 1)],
)
def test_account_promises_sync_the_wal(
    phases: dict[str, Counter[str]], phase: str, synced: int
) -> None:
    assert phases[phase]["ca.db-wal"] == synced, phases[phase]
