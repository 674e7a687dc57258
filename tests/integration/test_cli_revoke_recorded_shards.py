"""`acmekit server certs revoke` beside a CA serving 8 CRL shards, run without its file
(the default 4) or with a file saying 4: the command remakes the shard of 8 the CA
serves, as the CA recorded at its start (crl.py, `record_shards`), and no CRL it stores
lists another shard's entries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from cryptography import x509

from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.crls import crl_url, fetch, insert_revoked
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port

SHARDS = 8
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def acmekit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "acmekit", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _serials(der: bytes) -> set[int]:
    return {entry.serial_number for entry in x509.load_der_x509_crl(der)}


async def _served(leaf: x509.Certificate) -> dict[int, set[int]]:
    """Every shard's CRL as the CA's listener serves it: its serials."""
    base = crl_url(leaf).rsplit("/", 1)[0]
    return {shard: _serials(await fetch(f"{base}/{shard}.crl")) for shard in range(SHARDS)}


def _neighbours(state: Path, serial: int, base: int) -> tuple[int, int]:
    """Two revoked rows put straight into the CA's database: one in `serial`'s shard of
    8, one in the shard of 8 that shares its shard of 4."""
    same = base * SHARDS + serial % SHARDS
    other = base * SHARDS + (serial + 4) % SHARDS
    engine = sa.create_engine(f"sqlite:///{state / 'acmekit.db'}")
    try:
        insert_revoked(engine, [same, other], PEM, "neighbour-")
    finally:
        engine.dispose()
    return same, other


async def test_revoke_remakes_the_shard_the_ca_serves_whatever_its_own_count(
    tmp_path: Path, dns: DnsServerHandle, responder: Http01Responder
) -> None:
    state = tmp_path / "ca-state"
    operator = tmp_path / "operator.toml"
    operator.write_text("[crl]\nshards = 4\n")
    settings = {"crl": {"listen": f"127.0.0.1:{free_port()}", "shards": SHARDS}}
    with running_acmekit_server(
        tmp_path, dns_port=dns.dns_port, http01_port=responder.port, state_dir=state,
        settings=settings, verbose=False,
    ) as server:  # fmt: skip
        acme = HttpRawAcme(server.base_url, str(server.root_path))
        try:
            flow = Flow(acme, responder)
            leaves = []
            for name in ("one.recorded-shards.test", "two.recorded-shards.test"):
                _, order = await flow.issue(name)
                pem = (await flow.get(order["certificate"])).body
                leaves.append(x509.load_pem_x509_certificates(pem)[0])
            first, second = leaves
            same, _ = _neighbours(state, first.serial_number, 0x7000)

            # No --config: the default is 4 shards.
            revoked = acmekit(
                "server", "certs", "revoke", format(first.serial_number, "x"),
                "--reason", "superseded", "--state-dir", str(state),
            )  # fmt: skip
            assert revoked.returncode == 0, revoked.stderr
            assert revoked.stderr == ""
            shard = first.serial_number % SHARDS
            served = await _served(first)
            assert served[shard] == {first.serial_number, same}
            assert (
                f"crl: shard {shard} of {SHARDS} remade (as the CA recorded at its last start)"
                in revoked.stdout
            )

            # A file that says 4: warned, and the CA's count used all the same.
            same2, _ = _neighbours(state, second.serial_number, 0x7100)
            revoked = acmekit(
                "server", "certs", "revoke", format(second.serial_number, "x"),
                "--reason", "superseded", "--state-dir", str(state), "--config", str(operator),
            )  # fmt: skip
            assert revoked.returncode == 0, revoked.stderr
            assert f"shards = 4, but the CA serves {SHARDS}" in revoked.stderr
            shard2 = second.serial_number % SHARDS
            assert f"crl: shard {shard2} of {SHARDS} remade" in revoked.stdout
            served = await _served(second)
            assert {second.serial_number, same2} <= served[shard2]
        finally:
            await acme.close()
    # No CRL the commands stored lists an entry of another shard of 8.
    for number, serials in served.items():
        assert all(s % SHARDS == number for s in serials), number
