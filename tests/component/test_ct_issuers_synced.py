"""A CT log answers a submission with an SCT only once everything the entry's serving
rests on is on disk: the entry and, for a chain the log had not seen, its issuers
(static-ct-api serves each entry's chain from `issuer/<sha256>`: an entry whose
issuer a power loss dropped could never be served whole). On SQLite (WAL,
synchronous=NORMAL) that means no write to the WAL after its last sync when add-chain
returns. Observed as the process's system calls (strace), between markers the script
leaves in the trace (an rmdir of a path that does not exist)."""

from __future__ import annotations

import pytest

from acmekit_testkit.syscalls import SYNCS, traced

SCRIPT = r"""
from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate


issuer = ca_hierarchy(work / "ca")
ct = CtStore.from_url(f"sqlite:///{work / 'ct.db'}")
log = CtLog(ct, load_or_create_key(work), LogSettings(roots=(issuer.root_cert,), mmd=1.0))
inter = der(issuer.intermediate_cert)
mark("first")
log.add_chain([der(leaf_certificate(issuer, "first.example")), inter], False)
mark("again")
log.add_chain([der(leaf_certificate(issuer, "again.example")), inter], False)
mark("end")
ct.close()
"""


WRITES = ("pwrite64", "write", "pwritev", "pwritev2")


def _unsynced_at_end(calls: list[tuple[str, str, str]], wal: str) -> dict[str, int]:
    """For each marked phase, the writes to `wal` after its last sync within the phase
    (writes before the phase's first sync count too: a sync covers them)."""
    found: dict[str, int] = {}
    for phase, call, name in calls:
        if call == "mark" or name != wal:
            found.setdefault(phase, 0)
        elif call in SYNCS:
            found[phase] = 0
        elif call in WRITES:
            found[phase] += 1
    return found


@pytest.fixture(scope="module")
def unsynced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    work = tmp_path_factory.mktemp("ct-issuers-synced", numbered=False)
    return _unsynced_at_end(traced(work, SCRIPT, (*SYNCS, *WRITES)), "ct.db-wal")


@pytest.mark.parametrize("phase", ["first", "again"])
def test_add_chain_returns_with_nothing_unsynced_in_the_wal(
    unsynced: dict[str, int], phase: str
) -> None:
    # "first" stores the chain's issuers too; "again" finds them known.
    assert unsynced[phase] == 0, unsynced
