"""A revoked certificate stays on the CRL its CDP names whatever number of shards the
process that filed it was configured with (crl.py, repos/certificates.py, schema 0014):
a command run without the CA's file, or a change of `[crl] shards` rolled out one
process at a time, files rows for another count, and the CA still lists each one
under `serial % [crl] shards` (BR §4.10.1: an entry stays until the certificate
expires)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from acmekit.server import admin
from acmekit.server.config import ServerConfig
from acmekit.server.repos import certificates as certificates_repo
from acmekit.server.run import Assembly, assemble
from acmekit.server.store import Store
from acmekit_testkit.crls import insert_revoked

PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def _insert_revoked(store: Store, serials: list[int]) -> None:
    insert_revoked(store.engine, serials, PEM, "filed")


def _listed(store: Store, shard: int) -> set[int]:
    """The serials on `shard`'s stored CRL, read as a relying party would its DER."""
    rec = store.certificates.crl(shard)
    assert rec is not None
    return {entry.serial_number for entry in x509.load_der_x509_crl(rec.der)}


def _with_shards(config: ServerConfig, shards: int) -> ServerConfig:
    return replace(config, crl=replace(config.crl, shards=shards))


async def _close(*assemblies: Assembly) -> None:
    for assembly in assemblies:
        await assembly.app.close()
        assembly.store.engine.dispose()


async def test_a_revoke_command_with_another_count_loses_no_entry(
    ca_config: ServerConfig,
) -> None:
    """`certs revoke` without `--config` ([crl] shards = 4) beside a CA with 8."""
    ca = assemble(_with_shards(ca_config, 8))
    try:
        earlier = [0x2004, 0x2005, 0x2006, 0x2007]  # shards 4 to 7 of 8
        _insert_revoked(ca.store, earlier)
        ca.crl.refresh(force=True)
        later = 0x3001
        _insert_revoked(ca.store, [later])
        # A count of 4 given outright: the command takes the CA's recorded count now
        # (test_cli_revoke_recorded_shards.py), but the filing must not depend on it.
        admin.remake_crl(
            _with_shards(ca_config, 4), ca.store, format(later, "x"), datetime.now(UTC), 4
        )
        ca.crl.refresh(force=True)  # the CA's next scheduled round
        listed = {shard: _listed(ca.store, shard) for shard in range(8)}
    finally:
        await _close(ca)
    want = {shard: {s for s in [*earlier, later] if s % 8 == shard} for shard in range(8)}
    assert listed == want


async def test_a_rolling_change_of_the_count_loses_no_entry(ca_config: ServerConfig) -> None:
    """A runs with 4, B starts with 8, A revokes (filing by 4), then A restarts with 8."""
    old = assemble(_with_shards(ca_config, 4))
    new = assemble(_with_shards(ca_config, 8))
    try:
        old.crl.refresh(force=True)
        new.crl.refresh(force=True)
        serial = 0x1005  # shard 5 of 8, shard 1 of 4
        _insert_revoked(old.store, [serial])
        old.crl.revoked(serial)  # no rebuilder attached: remade (and filed) here, by 4
        restarted = assemble(_with_shards(ca_config, 8))
        try:
            restarted.crl.refresh(force=True)
            listed = {shard: _listed(restarted.store, shard) for shard in range(8)}
        finally:
            await _close(restarted)
    finally:
        await _close(old, new)
    assert listed == {shard: {serial} if shard == 5 else set() for shard in range(8)}


def test_the_rows_filed_otherwise_are_searched_in_the_index(
    config_on: Callable[[str], ServerConfig], tmp_path: Path
) -> None:
    """SQLite's plan for the read of the rows filed for another count or not yet: the
    covering index searched by count (a range each side of the CA's, and NULL), not
    scanned, so the rows filed for the CA's own count are not read twice, nor any PEM."""
    ca = assemble(config_on(f"sqlite:///{tmp_path / 'plan.db'}"))
    try:
        with ca.store.engine.connect() as conn:
            query = f"EXPLAIN QUERY PLAN {certificates_repo._ENTRIES_FILED_OTHERWISE}"
            plan = conn.exec_driver_sql(query, (0, 8, 0, 8, 0)).all()
    finally:
        ca.store.engine.dispose()
    reads = [str(row[-1]) for row in plan if str(row[-1]).startswith(("SCAN", "SEARCH"))]
    index = "SEARCH certificates USING COVERING INDEX ix_certificates_crl_entries"
    assert reads == [
        f"{index} (crl_shards=?)",
        f"{index} (crl_shards<?)",
        f"{index} (crl_shards>?)",
    ], plan
