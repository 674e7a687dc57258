"""The log's submission fast path: once a chain's issuers have been checked, the next
submission through them checks only its first certificate, against the issuer's key
kept from the first time. It must refuse exactly what the full check refuses (a wrong
signature, another issuer's name, the poison rules), for ECDSA and RSA issuers alike,
and build the same entry the CA computes on its side (RFC 6962 §3.2). get-sth is
served from memory: the head the last sequencer pass read, whichever process signed
it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from acmekit.ct.app import CtApp
from acmekit.ct.log import BadRequest, CtLog, LogSettings, PublishedHead, load_or_create_key
from acmekit.ct.store import CtStore
from acmekit.protocol import ct
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate
from acmekit_testkit.databases import fresh_database

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[CtLog, Issuer, Path]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database("sqlite", tmp_path, "ct.db", prefix="acmekit_ct") as url:
        store = CtStore.from_url(url)
        roots = (issuer.root_cert, *_rsa_hierarchy()[0:1])
        ctlog = CtLog(store, load_or_create_key(tmp_path), LogSettings(roots=roots, mmd=1.0))
        yield ctlog, issuer, Path(url.removeprefix("sqlite:///"))
        store.close()


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    public: Any,
    signer: Key,
    *,
    ca: bool,
    precert: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if precert:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder.sign(signer, hashes.SHA256())


_RSA: list[tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]] = []


def _rsa_hierarchy() -> tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    """An RSA root and intermediate (PKCS#1 v1.5 with SHA-256), made once per session."""
    if not _RSA:
        root_key = rsa.generate_private_key(65537, 2048)
        inter_key = rsa.generate_private_key(65537, 2048)
        root = _cert(_name("rsa root"), _name("rsa root"), root_key.public_key(), root_key, ca=True)
        inter = _cert(
            _name("rsa inter"), _name("rsa root"), inter_key.public_key(), root_key, ca=True
        )
        _RSA.append((root, inter, inter_key))
    return _RSA[0]


def _leaf(issuer_name: x509.Name, signer: Key, *, precert: bool = False) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return _cert(_name("leaf"), issuer_name, key.public_key(), signer, ca=False, precert=precert)


def test_a_known_ecdsa_chain_refuses_what_the_full_check_refuses(
    log: tuple[CtLog, Issuer, Path],
) -> None:
    ctlog, issuer, _ = log
    inter = der(issuer.intermediate_cert)
    ctlog.add_chain([der(leaf_certificate(issuer, "first.example")), inter], precert=False)
    assert ctlog._issuers  # the chain's issuers are known from here on

    other = ec.generate_private_key(ec.SECP256R1())
    forged = _leaf(issuer.intermediate_cert.subject, other)  # right name, wrong key
    with pytest.raises(BadRequest, match="not signed by chain"):
        ctlog.prepare([der(forged), inter], precert=False)
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    misnamed = _leaf(_name("someone else"), key)  # right key, another issuer's name
    with pytest.raises(BadRequest, match="not signed by chain"):
        ctlog.prepare([der(misnamed), inter], precert=False)
    with pytest.raises(BadRequest, match="poison"):
        ctlog.prepare([der(leaf_certificate(issuer, "p.example", precert=True)), inter], False)
    with pytest.raises(BadRequest, match="poison"):
        ctlog.prepare([der(leaf_certificate(issuer, "x.example")), inter], precert=True)
    with pytest.raises(BadRequest, match="DER"):
        ctlog.prepare([b"\x30\x03\x02\x01\x01", inter], precert=False)


def test_a_known_chain_gives_the_entry_the_ca_computes(log: tuple[CtLog, Issuer, Path]) -> None:
    """The precertificate entry built on the fast path (the TBS sliced from the DER and
    cut there, the key hash kept) is the one a verifier rebuilds from the certificates,
    and its SCT verifies; so does an x509 entry's."""
    ctlog, issuer, _ = log
    inter = der(issuer.intermediate_cert)
    ctlog.add_chain([der(leaf_certificate(issuer, "warm.example")), inter], precert=False)
    key = ctlog.key.public_key()
    for precert in (True, False):
        cert = leaf_certificate(issuer, f"fast{precert}.example", precert=precert)
        sct = ctlog.add_chain([der(cert), inter], precert=precert)
        entry = (
            ct.SignedEntry.precert(ct.precert_entry(cert, issuer.intermediate_cert))
            if precert
            else ct.SignedEntry.x509(der(cert))
        )
        assert ct.verify_sct(sct, entry, key)


def test_a_known_rsa_chain_checks_pkcs1_signatures(log: tuple[CtLog, Issuer, Path]) -> None:
    ctlog, _, _ = log
    root, inter, inter_key = _rsa_hierarchy()
    chain = [inter.public_bytes(Encoding.DER)]
    first = _leaf(inter.subject, inter_key)
    ctlog.add_chain([der(first), *chain], precert=False)  # full check; the chain is known
    second = _leaf(inter.subject, inter_key, precert=True)
    sct = ctlog.add_chain([der(second), *chain], precert=True)  # fast path
    entry = ct.SignedEntry.precert(ct.precert_entry(second, inter))
    assert ct.verify_sct(sct, entry, ctlog.key.public_key())
    forged = _leaf(inter.subject, rsa.generate_private_key(65537, 2048))
    with pytest.raises(BadRequest, match="not signed by chain"):
        ctlog.prepare([der(forged), *chain], precert=False)
    assert root.public_bytes(Encoding.DER) in ctlog.roots


def test_leaf_extensions_and_the_tbs_as_the_full_parsers_see_them(
    log: tuple[CtLog, Issuer, Path],
) -> None:
    _, issuer, _ = log
    cert = leaf_certificate(issuer, "parts.example", precert=True)
    assert ct.tbs_certificate_der(der(cert)) == cert.tbs_certificate_bytes
    with pytest.raises(ct.CtError):
        ct.tbs_certificate_der(der(cert) + b"\x00")
    pre = ct.SignedEntry.precert(ct.precert_entry(cert, issuer.intermediate_cert))
    for entry in (pre, ct.SignedEntry.x509(der(cert))):
        for extensions in (b"", ct.leaf_index_extension(70_000)):
            leaf = ct.merkle_tree_leaf(ct.TimestampedEntry(5, entry, extensions))
            assert ct.leaf_extensions(leaf) == extensions
            assert ct.parse_merkle_tree_leaf(leaf).extensions == extensions
            for bad in (leaf[:-1], leaf + b"\x00", b"\x01" + leaf[1:], leaf[:11]):
                with pytest.raises(ct.CtError):
                    ct.leaf_extensions(bad)


def _get_sth(app: CtApp) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/ct/v1/get-sth", "query_string": b""}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    doc: dict[str, Any] = json.loads(sent[1]["body"])
    return doc


def test_get_sth_serves_the_head_another_process_signed_after_a_pass(
    log: tuple[CtLog, Issuer, Path],
) -> None:
    """Two logs on one database: the one holding the lease sequences; the other's
    get-sth answers from memory, and its next sequencer pass (which places nothing, not
    holding the lease) reads the new head. A head older than two passes is read from
    the store at once."""
    first, issuer, db = log
    app = CtApp(first)
    first.sequence_once()  # the first log holds the lease
    assert _get_sth(app)["tree_size"] == 0
    other = CtLog(CtStore.from_url(f"sqlite:///{db}"), first.key, first.settings)
    try:
        inter = der(issuer.intermediate_cert)
        other.add_chain([der(leaf_certificate(issuer, "o.example")), inter], precert=False)
        first.store.release_lease(first.holder)
        assert other.sequence_once() == 1
        assert first.sequence_once() == 0  # the other holds the lease now
        doc = _get_sth(app)
        assert doc["tree_size"] == 1
        sth = ct.SignedTreeHead.from_json(doc)
        assert sth.verify(first.key.public_key()) and sth == other.sth()
        # no pass for a while: the head goes stale and is read from the store
        other.add_chain([der(leaf_certificate(issuer, "p.example")), inter], precert=False)
        other.sequence_once()
        assert first.head.fresh(-1.0) is None
        first.head._current = None  # as if the last pass were long ago
        assert _get_sth(app)["tree_size"] == 2
    finally:
        other.store.close()


def test_the_served_head_never_goes_back(log: tuple[CtLog, Issuer, Path]) -> None:
    """A head read before another thread published a newer one does not replace it."""
    ctlog, _, _ = log
    head = PublishedHead()
    newer = ctlog.sign_head(ct.TreeHead(2, 2_000, b"\x02" * 32))
    older = ctlog.sign_head(ct.TreeHead(1, 1_000, b"\x01" * 32))
    assert head.publish(newer) == head.publish(older)
    body = head.fresh(60.0)
    assert body is not None and json.loads(body)["tree_size"] == 2
