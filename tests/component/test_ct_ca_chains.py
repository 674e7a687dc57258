"""Certificates that `acmekit server` issues through the ACME flow (in process) are taken
by the CT log whose roots are the CA's root.pem, and their SCTs verify."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore
from acmekit.protocol import ct
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Flow


async def test_an_issued_chain_gets_a_verifiable_sct(
    flow: Flow, ca: Assembly, tmp_path: Path
) -> None:
    _, order = await flow.issue("logged.test")
    chain = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)
    roots = tuple(
        x509.load_pem_x509_certificates((ca.app.config.state_dir / "root.pem").read_bytes())
    )
    store = CtStore.from_url(f"sqlite:///{tmp_path / 'ct.db'}")
    try:
        log = CtLog(store, load_or_create_key(tmp_path), LogSettings(roots=roots))
        ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
        sct = log.add_chain(ders, precert=False)
        assert ct.verify_sct(sct, ct.SignedEntry.x509(ders[0]), log.key.public_key())
        assert log.add_chain(ders, precert=False) == sct
        assert log.sequence_once() == 1
        (leaf,) = log.entries(0, 0)
        entry = ct.parse_merkle_tree_leaf(leaf.leaf_input)
        assert (entry.timestamp, entry.entry.body) == (sct.timestamp, ders[0])
    finally:
        store.close()
