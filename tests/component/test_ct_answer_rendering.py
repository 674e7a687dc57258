"""The log's submission answers, built the short way: the add-chain body rendered from
the stored entry must be byte for byte what `json.dumps(sct.to_json())` gave, for a new
entry and for one submitted again, and its SCT must verify over the entry whose leaf the
log stored (the SCT's signature input and the Merkle leaf are built once, RFC 6962 §3.2,
§3.4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.ct.log import CtLog, LogSettings, load_or_create_key
from acmekit.ct.store import CtStore, StoredEntry
from acmekit.protocol import ct
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[CtLog, Issuer]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database("sqlite", tmp_path, "ct.db", prefix="acmekit_ct") as url:
        store = CtStore.from_url(url)
        settings = LogSettings(roots=(issuer.root_cert,), mmd=1.0)
        ctlog = CtLog(store, load_or_create_key(tmp_path), settings)
        yield ctlog, issuer
        store.close()


@pytest.mark.parametrize("precert", [False, True], ids=["add-chain", "add-pre-chain"])
def test_the_rendered_answer_is_the_sct_as_json_and_verifies(
    log: tuple[CtLog, Issuer], precert: bool
) -> None:
    ctlog, issuer = log
    inter = der(issuer.intermediate_cert)
    chains = [
        [der(leaf_certificate(issuer, f"r{i}.example", precert=precert)), inter] for i in range(3)
    ]

    async def submit() -> list[bytes]:
        # together (one batch), then the first again (the stored entry's answer)
        first = await asyncio.gather(*[ctlog.add_chain_body_async(c, precert) for c in chains])
        return [*first, await ctlog.add_chain_body_async(chains[0], precert)]

    bodies = asyncio.run(submit())
    assert bodies[3] == bodies[0]
    for chain, body in zip([*chains, chains[0]], bodies, strict=True):
        sct = ctlog.add_chain(chain, precert)  # the same entry: its first SCT
        assert body == json.dumps(sct.to_json()).encode()
        assert ct.SignedCertificateTimestamp.from_json(json.loads(body)) == sct
        stored = ctlog.store.find(ctlog.prepare(chain, precert).identity)
        assert stored is not None and stored.leaf_input[2:10] == sct.timestamp.to_bytes(8, "big")
        entry = ct.parse_merkle_tree_leaf(stored.leaf_input)
        assert entry.extensions == sct.extensions
        assert ct.leaf_index_of(sct.extensions) == stored.seq
        assert ct.verify_sct(sct, entry.entry, ctlog.key.public_key())
    extensions = [ct.unb64(json.loads(b)["extensions"]) for b in bodies[:3]]
    assert sorted(ct.leaf_index_of(e) for e in extensions) == [0, 1, 2]


def test_a_stored_signature_that_is_not_digitally_signed_is_refused(
    log: tuple[CtLog, Issuer],
) -> None:
    ctlog, _ = log
    leaf = ct.signed_leaf(1, ct.SignedEntry.x509(b"C").encode(), ct.leaf_index_extension(0))
    good = ct.sign(ctlog.key, leaf).encode()
    for bad in (good[:-1], good + b"\0", b"\x04\x03"):
        with pytest.raises(ct.CtError):
            ctlog._sct_body(StoredEntry(b"i" * 32, b"h" * 32, 1, leaf, b"", bad, 0))
    body = ctlog._sct_body(StoredEntry(b"i" * 32, b"h" * 32, 1, leaf, b"", good, 0))
    assert json.loads(body)["signature"] == ct.b64(good)
