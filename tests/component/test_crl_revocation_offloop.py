"""A revocation's CRL: made off the event loop, one per shard for many revocations, from
its own shard's entries only (crl.py, repos/certificates.py, migration 0014).

The remaking is held inside by a linter that waits on an event (`GatedLinter`), so the
tests see what the CA answers while a CRL is being made, without a clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from acmekit.protocol import jose
from acmekit.server.config import ServerConfig
from acmekit.server.crl import shard_of
from acmekit.server.repos import certificates as certificates_repo
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.crls import insert_revoked
from acmekit_testkit.sqlcount import counting

PEM = "-----BEGIN CERTIFICATE-----\n" + "A" * 2000 + "\n-----END CERTIFICATE-----\n"
OTHERS = 300  # revoked rows put straight into the table, in every shard


class GatedLinter:
    """Stands in for the CRL's lint: the first CRL waits until `release` (at most a
    while, so a CA that lints on the event loop still ends the test, failing it)."""

    enabled = True

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def crl(self, _der: bytes) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.release.wait(timeout=15)


@pytest.fixture
async def one_shard_ca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    """The CA with one CRL shard, so every revocation remakes the same CRL."""
    assembly = assemble(replace(ca_config, crl=replace(ca_config.crl, shards=1)))
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _certificate(flow: Flow, name: str) -> x509.Certificate:
    _, order = await flow.issue(name)
    return x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]


async def _revoke(flow: Flow, cert: x509.Certificate) -> int:
    body = {"certificate": jose.b64e(cert.public_bytes(Encoding.DER)), "reason": 4}
    return (
        await flow.acme.post(f"{flow.acme.base}/acme/revoke-cert", body, flow.key, flow.kid)
    ).status


def _listed(ca: Assembly, shard: int) -> tuple[int, set[int]]:
    """The stored CRL of `shard`: its number and its serials."""
    stored = ca.store.certificates.crl(shard)
    assert stored is not None
    crl = x509.load_der_x509_crl(stored.der)
    return stored.number, {entry.serial_number for entry in crl}


async def _until_listed(ca: Assembly, serials: set[int]) -> None:
    """Wait until shard 0's CRL lists `serials` and no shard is marked (bounded)."""
    for _ in range(600):
        await asyncio.sleep(0.05)
        if _listed(ca, 0)[1] == serials and not ca.crl.dirty():
            return
    raise AssertionError(f"the CRL never listed {serials}")


def _insert_revoked(ca: Assembly, count: int) -> set[int]:
    """`count` revoked, unexpired certificates with a PEM, straight into the table."""
    serials = {0x7E570000 + n for n in range(count)}
    insert_revoked(ca.store.engine, serials, PEM, "bulk")
    return serials


async def test_a_revocation_reads_its_shards_entries_and_no_pem(
    ca_config: ServerConfig, responder: Http01Responder
) -> None:
    with counting() as count:
        ca = assemble(ca_config)
        try:
            flow = Flow(RawAcme(ca.app), responder)
            cert = await _certificate(flow, "read.crl-offloop.test")
            bulk = _insert_revoked(ca, OTHERS)
            shards = ca.crl.settings.shards
            shard = shard_of(cert.serial_number, shards)
            ca.crl.refresh(force=True)  # every bulk row filed under its shard
            before = len(count.texts)
            assert await _revoke(flow, cert) == 200
            texts = count.texts[before:]
        finally:
            await ca.app.close()
            ca.store.engine.dispose()
    # Two reads of entries, their columns only: the rows filed under the shard for the
    # CA's number of shards, and those filed for another number or not yet (none here).
    entries = "SELECT serial, revoked_at, revocation_reason FROM certificates WHERE"
    reads = [t for t in texts if t.startswith(entries)]
    assert len(reads) == 2, [t for t in texts if "certificates" in t]
    assert "crl_shards = " in reads[0] and "crl_shards IS NULL" in reads[1], reads
    # Only the revoked certificate's own lookup (by serial) reads a PEM, or every
    # column of the table.
    lookups = [t for t in texts if "pem" in t.lower() or "certificates.*" in t]
    assert len(lookups) == 1, lookups
    # What the CRL lists: its own shard's revoked certificates, every one of them.
    own = {s for s in bulk if shard_of(s, shards) == shard} | {cert.serial_number}
    assert _stored_serials(ca_config, shard) == own


def _stored_serials(config: ServerConfig, shard: int) -> set[int]:
    """The serials on `shard`'s stored CRL, read as a relying party would its DER."""
    engine = sa.create_engine(config.db_url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT der FROM crls WHERE shard = :s")
            der = conn.execute(query, {"s": shard}).scalar_one()
    finally:
        engine.dispose()
    return {entry.serial_number for entry in x509.load_der_x509_crl(bytes(der))}


def test_a_shards_entries_are_read_from_their_index_alone(
    config_on: Callable[[str], ServerConfig], tmp_path: Path
) -> None:
    """SQLite's plan for the entries' read: the covering index, searched by shard, so
    no table row (and no PEM) is read, nor another shard's entry."""
    ca = assemble(config_on(f"sqlite:///{tmp_path / 'plan.db'}"))
    try:
        with ca.store.engine.connect() as conn:
            plan = conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {certificates_repo._REVOKED_ENTRIES}", (4, 0, 0)
            ).all()
    finally:
        ca.store.engine.dispose()
    details = " ".join(str(row[-1]) for row in plan)
    index = "USING COVERING INDEX ix_certificates_crl_entries"
    assert f"{index} (crl_shards=? AND crl_shard=? AND not_after>?)" in details, details


async def test_revoke_cert_is_answered_while_its_crl_is_being_made(
    one_shard_ca: Assembly, responder: Http01Responder
) -> None:
    ca = one_shard_ca
    flow = Flow(RawAcme(ca.app), responder)
    cert = await _certificate(flow, "loop.crl-offloop.test")
    ca.crl.refresh(force=True)  # as at start
    gate = GatedLinter()
    ca.crl.linter = gate  # type: ignore[assignment]
    number, _ = _listed(ca, 0)
    ca.app.start()
    assert await _revoke(flow, cert) == 200
    # The answer came before the CRL: the remaking waits inside, in its own thread,
    # and the event loop answers other requests meanwhile.
    assert await asyncio.to_thread(gate.entered.wait, 15)
    assert _listed(ca, 0) == (number, set())
    directory = await flow.acme.request("GET", "/directory")
    assert directory.status == 200
    gate.release.set()
    await _until_listed(ca, {cert.serial_number})
    assert _listed(ca, 0)[0] == number + 1


async def test_many_revocations_share_one_crl_and_all_are_listed(
    one_shard_ca: Assembly, responder: Http01Responder
) -> None:
    ca = one_shard_ca
    flow = Flow(RawAcme(ca.app), responder)
    certs = [await _certificate(flow, f"c{n}.crl-offloop.test") for n in range(4)]
    ca.crl.refresh(force=True)  # as at start
    gate = GatedLinter()
    ca.crl.linter = gate  # type: ignore[assignment]
    number, _ = _listed(ca, 0)
    ca.app.start()
    assert await _revoke(flow, certs[0]) == 200
    assert await asyncio.to_thread(gate.entered.wait, 15)
    for cert in certs[1:]:  # while the first one's CRL is being made
        assert await _revoke(flow, cert) == 200
    gate.release.set()
    await _until_listed(ca, {c.serial_number for c in certs})
    # The first revocation's CRL, then one for the three stored while it was made.
    assert _listed(ca, 0)[0] == number + 2
    assert gate.calls == 2
