"""What a revocation costs the CA's event loop, and what remaking its CRL shard reads,
with many revoked certificates (default 100,000) put straight into an SQLite database.

Run once with this tree's code and once with an older tree's (`PYTHONPATH=OLD/src`) to
compare: `revoked` is what `revokeCert` ran on the event loop after storing the
revocation (before: the shard's CRL remade there; now: the shard marked and the
rebuilder woken); `regenerate` is one shard's remaking (now in the rebuilder's thread);
with and the same remaking without the CRL's lint, which is most of it. CPU times (process
time, median of `--runs`).

    .venv/bin/python bench/crl_revoke.py [--revoked 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acmekit.server.config import ServerConfig
from acmekit.server.run import assemble

PEM = "-----BEGIN CERTIFICATE-----\n" + "A" * 3000 + "\n-----END CERTIFICATE-----\n"


def _insert(db: Path, revoked: int, extra: int) -> list[int]:
    """`revoked` revoked rows and `extra` unrevoked ones (their serials returned)."""
    now = datetime.now(UTC)
    us = int(now.timestamp() * 1_000_000)
    later = int((now + timedelta(days=60)).timestamp() * 1_000_000)
    rows = [
        (f"c{n}", format(0x10000000 + n, "x"), PEM, "[]", us, later, us,
         us if n < revoked else None, 4 if n < revoked else None, False)
        for n in range(revoked + extra)
    ]  # fmt: skip
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO certificates (id, serial, pem, identifiers, not_before, not_after, "
            "issued, revoked_at, revocation_reason, abandoned) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    return [0x10000000 + n for n in range(revoked, revoked + extra)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--revoked", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-lint", action="store_true", help="skip the unlinted remaking")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ca.db"
        config = ServerConfig(state_dir=Path(tmp) / "state", db=f"sqlite:///{db}")
        ca = assemble(config)
        serials = _insert(db, args.revoked, args.runs)
        crl = ca.crl
        t0 = time.process_time()
        crl.refresh(force=True)  # every shard once (now: the revoked rows filed too)
        print(f"first refresh (4 shards): {time.process_time() - t0:.2f} s CPU")
        if hasattr(crl, "attach"):
            crl.attach(lambda: None)  # as the app's rebuilder does
        loop_times, remake_times, unlinted = [], [], []
        linter = crl.linter
        for serial in serials:
            cert = ca.store.certificates.certificate_by_serial(format(serial, "x"))
            assert cert is not None
            ca.store.certificates.revoke(cert.id, 4, datetime.now(UTC))
            t0 = time.process_time()
            crl.revoked(serial)
            loop_times.append(time.process_time() - t0)
            shard = serial % crl.settings.shards
            t0 = time.process_time()
            rec = crl.regenerate(shard)
            remake_times.append(time.process_time() - t0)
            if args.no_lint:
                continue
            crl.linter = None  # the same remaking without the CRL's lint (lint.py)
            t0 = time.process_time()
            crl.regenerate(shard)
            unlinted.append(time.process_time() - t0)
            crl.linter = linter
        entries = len(list(__import__("cryptography").x509.load_der_x509_crl(rec.der)))
        print(f"revoked rows: {args.revoked}; shard {shard}'s CRL: {entries} entries")
        print(f"revoked (on the event loop): {statistics.median(loop_times) * 1000:.1f} ms CPU")
        print(f"regenerate (one shard): {statistics.median(remake_times) * 1000:.0f} ms CPU")
        if unlinted:
            print(f"  of which not lint: {statistics.median(unlinted) * 1000:.0f} ms CPU")
        ca.store.engine.dispose()


if __name__ == "__main__":
    main()
