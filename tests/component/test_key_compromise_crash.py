"""A keyCompromise revocation blocks the certificate's key. The process may die between
the two (a crash, a kill, a power loss between their synced commits): the revocation
then stands and its retry is answered "already revoked", so the block must not rest on
a second commit that may never come. The process is killed (strace's fault injection)
as it syncs the revocation's commit, the moment before the key's block was written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SETUP = r"""
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.server import records
from acmekit.server.store import Store
from acmekit_testkit.ctlog import ca_hierarchy, leaf_certificate
from acmekit_testkit.pendingorders import stored_account

work = Path(sys.argv[1])
issuer = ca_hierarchy(work / "ca")
leaf = leaf_certificate(issuer, "compromised.example")
store = Store.from_url(f"sqlite:///{work / 'ca.db'}")
now = datetime.now(UTC)
acct = stored_account(store, now)
name = Identifier(IdentifierType.DNS, "compromised.example")
store.orders.add_order(
    records.OrderRecord("o", acct.id, (name,), (), now + timedelta(days=1), now), []
)
serial = format(leaf.serial_number, "x")
rec = records.CertificateRecord(
    "c", serial, "o", acct.id, None, (name,), now, now + timedelta(days=90), now
)
store.certificates.reserve_serial(rec)
pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
assert store.certificates.record_issued("c", "o", pem)
store.engine.dispose()
print(serial)
"""

REVOKE = r"""
import sys
from datetime import UTC, datetime
from pathlib import Path

from acmekit.server import admin
from acmekit.server.store import Store

work = Path(sys.argv[1])
store = Store.from_url(f"sqlite:///{work / 'ca.db'}")
rec = admin.find_certificate(store, sys.argv[2])
try:
    admin.revoke_certificate(store, sys.argv[2], "keyCompromise", datetime.now(UTC))
except admin.AdminError as exc:
    print(exc)
print("blocked" if store.certificates.key_blocked(admin._spki(admin.leaf_of(rec))) else "open")
store.engine.dispose()
"""


def test_a_kill_after_the_revocation_leaves_the_key_blocked_once_retried(
    tmp_path: Path,
) -> None:
    strace = shutil.which("strace")
    assert strace is not None, "strace is needed to kill the process at a sync"
    (tmp_path / "setup.py").write_text(SETUP)
    (tmp_path / "revoke.py").write_text(REVOKE)
    made = subprocess.run(
        [sys.executable, str(tmp_path / "setup.py"), str(tmp_path)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    serial = made.stdout.strip()
    wal = tmp_path / "ca.db-wal"
    # Killed on entering the revocation's commit's sync of the WAL: the second, after
    # the sync of the header of the WAL the revocation starts (the setup's last close
    # checkpointed and removed the old one). Its frames are written (the kernel keeps
    # them through the process's death); nothing after it ran.
    killed = subprocess.run(
        [strace, "-f", "-qq", "-o", "/dev/null", "-P", str(wal),
         "-e", "trace=fsync,fdatasync", "-e", "inject=fsync,fdatasync:signal=KILL:when=2",
         sys.executable, str(tmp_path / "revoke.py"), str(tmp_path), serial],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode != 0 and "blocked" not in killed.stdout, killed
    retried = subprocess.run(
        [sys.executable, str(tmp_path / "revoke.py"), str(tmp_path), serial],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = retried.stdout.splitlines()
    assert "already revoked" in lines[0], lines
    assert lines[-1] == "blocked", lines
