"""A CT log answers a submission with an SCT only once everything the entry's serving
rests on is on disk: the entry and, for a chain the log had not seen, its issuers
(static-ct-api serves each entry's chain from `issuer/<sha256>`: an entry whose
issuer a power loss dropped could never be served whole). On SQLite (WAL,
synchronous=NORMAL) that means no write to the WAL after its last sync when add-chain
returns. Observed as the process's system calls (strace), between markers the script
leaves in the trace (an rmdir of a path that does not exist)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import os
import sys
from pathlib import Path

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate

work = Path(sys.argv[1])


def mark(name):
    try:
        os.rmdir(work / "marks" / name)
    except OSError:
        pass


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

_CALL = re.compile(r"^\d+\s+(\w+)\((.*)$")


def _unsynced_at_end(trace: str, wal: str) -> dict[str, int]:
    """For each marked phase, the writes to `wal` after its last sync within the phase
    (writes before the phase's first sync count too: a sync covers them)."""
    found: dict[str, int] = {}
    phase = None
    for line in trace.splitlines():
        call = _CALL.match(line)
        if call is None:
            continue
        name, args = call.groups()
        if name == "rmdir":
            phase = re.search(r'marks/([\w-]+)"', args).group(1)  # type: ignore[union-attr]
            found[phase] = 0
            continue
        path = re.search(r"<([^>]*)>", args)
        if phase is None or path is None or Path(path.group(1)).name != wal:
            continue
        if name in ("fsync", "fdatasync"):
            found[phase] = 0
        elif name in ("pwrite64", "write", "pwritev", "pwritev2"):
            found[phase] += 1
    return found


@pytest.fixture(scope="module")
def unsynced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    strace = shutil.which("strace")
    assert strace is not None, "strace is needed to watch the process's syncs"
    work = tmp_path_factory.mktemp("ct-issuers-synced", numbered=False)
    (work / "run.py").write_text(SCRIPT)
    out = work / "trace.txt"
    calls = "trace=fsync,fdatasync,rmdir,pwrite64,write,pwritev,pwritev2"
    watch = [strace, "-f", "-qq", "-y", "-e", calls, "-o", str(out)]
    subprocess.run(
        [*watch, sys.executable, str(work / "run.py"), str(work)], check=True, timeout=120
    )
    return _unsynced_at_end(out.read_text(), "ct.db-wal")


@pytest.mark.parametrize("phase", ["first", "again"])
def test_add_chain_returns_with_nothing_unsynced_in_the_wal(
    unsynced: dict[str, int], phase: str
) -> None:
    # "first" stores the chain's issuers too; "again" finds them known.
    assert unsynced[phase] == 0, unsynced
