"""The CT log in process, as a hostile client sees it: chains that only look issued,
tile paths with absurd numbers, and every proof it serves against an independent
RFC 6962 §2.1 computation (MTH, PATH and SUBPROOF written out from the RFC's
definitions, over the leaves it serves)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.ct.app import CtApp
from acmekit.ct.log import CtLog, LogSettings, load_or_create_key, now_ms
from acmekit.ct.store import CtStore
from acmekit.ct.tiles import TileReader
from acmekit.protocol.ct import b64, unb64
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import ca_hierarchy, chain_json, der, leaf_certificate
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.tiers import BACKEND_PARAMS

# ----- RFC 6962 §2.1, from the text -----


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


# ----- an in-process client of the ASGI app -----


async def _call(app: CtApp, method: str, target: str, body: bytes = b"") -> tuple[int, Any]:
    raw_path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "method": method,
        "path": raw_path,
        "query_string": query.encode(),
        "headers": [],
    }
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    payload = sent[1]["body"]
    ctype = dict(sent[0]["headers"])[b"content-type"]
    return status, json.loads(payload) if ctype == b"application/json" else payload


def call(app: CtApp, method: str, target: str, body: bytes = b"") -> tuple[int, Any]:
    return asyncio.run(_call(app, method, target, body))


@pytest.fixture
def log(tmp_path: Path) -> Iterator[tuple[CtLog, CtApp, Issuer]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database("sqlite", tmp_path, "ct.db", prefix="acmekit_ct") as url:
        store = CtStore.from_url(url)
        settings = LogSettings(roots=(issuer.root_cert,), mmd=1.0, batch=7)
        ctlog = CtLog(store, load_or_create_key(tmp_path), settings)
        yield ctlog, CtApp(ctlog, TileReader(ctlog, "127.0.0.1:1")), issuer
        store.close()


def _leaf_with_key(
    issuer: Issuer, name: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    sign_key = issuer.intermediate_key
    assert isinstance(sign_key, ec.EllipticCurvePrivateKey)
    return cert.sign(sign_key, hashes.SHA256()), key


def _signed_by_leaf(
    parent: x509.Certificate, parent_key: ec.EllipticCurvePrivateKey, name: str, *, poison: bool
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(parent.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(7)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
    )
    if poison:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder.sign(parent_key, hashes.SHA256())


@pytest.mark.parametrize("endpoint", ["add-chain", "add-pre-chain"])
def test_a_subscriber_cannot_log_what_its_own_key_signed(
    log: tuple[CtLog, CtApp, Issuer], endpoint: str
) -> None:
    """RFC 6962 §3.1: a valid signature chain to a root; an end-entity certificate is
    not a CA (RFC 5280 §6.1.4 (k)), so what it signs is not issued by anyone the log
    trusts."""
    ctlog, app, issuer = log
    subscriber, key = _leaf_with_key(issuer, "victim.example")
    forged = _signed_by_leaf(subscriber, key, "bank.example", poison=endpoint == "add-pre-chain")
    body = json.dumps(chain_json([forged, subscriber, issuer.intermediate_cert])).encode()
    status, doc = call(app, "POST", f"/ct/v1/{endpoint}", body)
    assert status == 400, doc
    assert doc["error"] == "bad_request" and "CA" in doc["error_message"]
    assert ctlog.sequence_once() == 0


@pytest.mark.parametrize(
    "target",
    [
        "/tile/0/000.p/" + "1" * 5000,
        "/tile/0/" + "x123/" * 1500 + "000",
        "/tile/data/" + "x999/" * 1500 + "000.p/1",
        "/tile/0/" + "x123/" * 20 + "000",
        "/tile/5/000.p/255",
    ],
)
def test_absurd_tile_numbers_are_not_found(log: tuple[CtLog, CtApp, Issuer], target: str) -> None:
    _, app, _ = log
    status, doc = call(app, "GET", target)
    assert status == 404, doc


@pytest.mark.parametrize(
    "query",
    [
        "get-entries?start=-1&end=2",
        "get-entries?start=0&end=99999999999999999999",
        "get-entries?start=0x1&end=2",
        "get-entries?start=%EF%BC%91&end=2",  # a full-width digit
        "get-entries?start=1&start=2&end=3",
        "get-sth-consistency?first=2&second=1",
        "get-sth-consistency?first=1&second=9223372036854775807",
        "get-proof-by-hash?hash=AAAA&tree_size=1",
        "get-proof-by-hash?hash=" + "A" * 44 + "&tree_size=1",
        "get-entry-and-proof?leaf_index=3&tree_size=3",
        "get-entry-and-proof?leaf_index=0&tree_size=0",
    ],
)
def test_parameter_abuse_is_a_4xx(log: tuple[CtLog, CtApp, Issuer], query: str) -> None:
    ctlog, app, issuer = log
    for i in range(3):
        cert = leaf_certificate(issuer, f"p{i}.example")
        ctlog.add_chain([der(cert), der(issuer.intermediate_cert)], precert=False)
    ctlog.sequence_once()
    status, doc = call(app, "GET", "/ct/v1/" + query)
    assert 400 <= status < 500 and "error_message" in doc, (status, doc)


@pytest.mark.parametrize(
    "body",
    [
        b'{"chain": [1, 2]}',
        b'{"chain": [null]}',
        b'{"chain": "AAAA"}',
        b'{"chain": [""]}',
        b'{"chain": ["MAA="]}',  # an empty SEQUENCE
        json.dumps({"chain": [b64(b"\x30\x82\xff\xff" + b"\x30" * 64)]}).encode(),
        json.dumps({"chain": [b64(b"\x30\x80" * 2000)]}).encode(),  # deep, indefinite
        b"[]",
        b"\xff\xfe",
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting: no RecursionError
        b'{"chain": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
)
def test_malformed_submissions_are_a_400(log: tuple[CtLog, CtApp, Issuer], body: bytes) -> None:
    _, app, _ = log
    status, doc = call(app, "POST", "/ct/v1/add-chain", body)
    assert status == 400, doc


def test_served_proofs_match_an_independent_rfc6962_computation(
    log: tuple[CtLog, CtApp, Issuer],
) -> None:
    """Entries sequenced in uneven batches (the node store grows across them); at the
    end, every tree size's root, every audit path and every consistency proof served
    is the RFC's own."""
    ctlog, app, issuer = log
    inter = der(issuer.intermediate_cert)
    heads = []
    for i in range(37):
        pre = i % 4 == 1
        cert = leaf_certificate(issuer, f"m{i}.example", precert=pre)
        ctlog.add_chain([der(cert), inter], precert=pre)
        if i in (0, 1, 4, 15, 16, 30, 36):
            ctlog.sequence_once()
            status, doc = call(app, "GET", "/ct/v1/get-sth")
            assert status == 200
            heads.append(doc)
    status, doc = call(app, "GET", "/ct/v1/get-entries?start=0&end=36")
    assert status == 200 and len(doc["entries"]) == 37
    d = [unb64(e["leaf_input"]) for e in doc["entries"]]
    for head in heads:
        size = head["tree_size"]
        assert unb64(head["sha256_root_hash"]) == mth(d[:size])
    n = len(d)
    for size in range(1, n + 1):
        for m in range(size):
            leaf_hash = b64(_h(b"\x00" + d[m]))
            status, doc = call(
                app, "GET", f"/ct/v1/get-entry-and-proof?leaf_index={m}&tree_size={size}"
            )
            assert status == 200
            assert [unb64(p) for p in doc["audit_path"]] == path(m, d[:size])
            target = f"/ct/v1/get-proof-by-hash?hash={quote(leaf_hash)}&tree_size={size}"
            status, doc = call(app, "GET", target)
            assert status == 200 and doc["leaf_index"] == m
            assert [unb64(p) for p in doc["audit_path"]] == path(m, d[:size])
        for first in range(1, size + 1):
            target = f"/ct/v1/get-sth-consistency?first={first}&second={size}"
            status, doc = call(app, "GET", target)
            assert status == 200
            assert [unb64(p) for p in doc["consistency"]] == subproof(first, d[:size], True)


@pytest.fixture(params=BACKEND_PARAMS)
def two_sequencers(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[CtLog, CtLog, Issuer]]:
    issuer = ca_hierarchy(tmp_path / "ca")
    with fresh_database(request.param, tmp_path, "ct2.db", prefix="acmekit_ct") as url:
        stores = [CtStore.from_url(url), CtStore.from_url(url)]
        settings = LogSettings(roots=(issuer.root_cert,), mmd=1.0, batch=5)
        key = load_or_create_key(tmp_path)
        yield CtLog(stores[0], key, settings), CtLog(stores[1], key, settings), issuer
        for store in stores:
            store.close()


def test_sequencers_racing_past_the_lease_keep_one_consistent_tree(
    two_sequencers: tuple[CtLog, CtLog, Issuer],
) -> None:
    """A sequencer whose lease ran out while it worked races the next one: the tree's
    compare-and-set lets one batch in and rolls the other back, so every entry is placed
    once and the tree is the RFC's over what get-entries serves."""
    first, second, issuer = two_sequencers
    inter = der(issuer.intermediate_cert)
    for i in range(60):
        cert = leaf_certificate(issuer, f"r{i}.example")
        (first if i % 2 else second).add_chain([der(cert), inter], precert=False)

    def drain(ctlog: CtLog) -> None:
        for _ in range(200):
            try:
                ctlog.store.sequence(ctlog.sign_head, now_ms(), 5, 10**9)
            except Exception:  # the other one moved the tree: try again
                continue
            if ctlog.sth().head.tree_size == 60:
                return

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(drain, [first, second]))
    head = first.sth().head
    assert head.tree_size == 60
    leaves = first.entries(0, 59)
    assert [e.seq for e in leaves] == list(range(60))
    assert head.root_hash == mth([e.leaf_input for e in leaves])
    for size in (1, 7, 33, 60):
        proof = first.consistency(size, 60)
        assert proof == subproof(size, [e.leaf_input for e in leaves], True)


def _intermediate_signed(
    issuer: Issuer, extensions: list[tuple[x509.ExtensionType, bool]]
) -> bytes:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.intermediate_cert.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(99)
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return der(builder.sign(key, hashes.SHA256()))


_SAN = x509.SubjectAlternativeName([x509.DNSName("a.example")])
_BAD_SAN = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.17"), b"\x30\x03\x82\x01")
_ONE = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")
_TWO = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.6"), b"\x05\x00")


@pytest.mark.parametrize("endpoint", ["add-chain", "add-pre-chain"])
@pytest.mark.parametrize("shape", ["malformed SAN", "duplicate extension", "in the issuer"])
def test_certificates_whose_extensions_do_not_parse_are_a_400(
    log: tuple[CtLog, CtApp, Issuer], endpoint: str, shape: str
) -> None:
    """Extensions are parsed lazily: one that does not parse must not become a 500."""
    _, app, issuer = log
    poison = [(x509.PrecertPoison(), True)] if endpoint == "add-pre-chain" else []
    inter = der(issuer.intermediate_cert)
    if shape == "malformed SAN":
        chain = [_intermediate_signed(issuer, [(_BAD_SAN, False), *poison]), inter]
    elif shape == "duplicate extension":
        two = _intermediate_signed(issuer, [(_ONE, False), (_TWO, False), *poison])
        same = two.replace(bytes.fromhex("06042a030406"), bytes.fromhex("06042a030405"))
        chain = [same, inter]
    else:
        leaf = _intermediate_signed(issuer, [(_SAN, True), *poison])
        chain = [leaf, _intermediate_signed(issuer, [(_BAD_SAN, False)]), inter]
    body = json.dumps({"chain": [b64(c) for c in chain]}).encode()
    status, doc = call(app, "POST", f"/ct/v1/{endpoint}", body)
    assert status == 400, doc


def test_a_precertificate_poison_must_be_critical(log: tuple[CtLog, CtApp, Issuer]) -> None:
    """RFC 6962 §3.1: a non-critical poison would let clients accept the precertificate."""
    _, app, issuer = log
    leaf = _intermediate_signed(issuer, [(_SAN, True), (x509.PrecertPoison(), False)])
    body = json.dumps({"chain": [b64(leaf), b64(der(issuer.intermediate_cert))]}).encode()
    status, doc = call(app, "POST", "/ct/v1/add-pre-chain", body)
    assert status == 400 and "critical" in doc["error_message"], doc
