"""`acmekit ct` as a process on a loopback port: chains issued by an acmekit CA hierarchy
get SCTs that verify with the key of the log list it writes; the tree heads, audit
paths, consistency proofs and entries it serves verify (RFC 6962 §4); bad requests get
4xx JSON that names the problem; the static-ct-api read path serves the same tree."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from acmekit.ct import merkle
from acmekit.ct.tiles import note_key_id, tile_leaf
from acmekit.protocol import ct
from acmekit.server.ca import Issuer
from acmekit_testkit.ctlog import (
    RunningLog,
    ca_hierarchy,
    chain_json,
    der,
    leaf_certificate,
    running_ct_log,
    self_signed,
)
from acmekit_testkit.ctlog import json_call as call


@dataclass(frozen=True)
class Log:
    running: RunningLog
    issuer: Issuer
    info: ct.LogInfo


def raw(url: str) -> tuple[int, bytes]:
    status, body, _ = raw_with_headers(url)
    return status, body


def raw_with_headers(url: str) -> tuple[int, bytes, str]:
    """Status, body and Cache-Control."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("cache-control", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("cache-control", "")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    base = tmp_path_factory.mktemp("ct")
    issuer = ca_hierarchy(base / "ca")
    with running_ct_log(base / "log", base / "ca" / "root.pem", mmd=1.0) as running:
        (info,) = ct.LogList.loads(running.log_list.read_text()).logs
        yield Log(running, issuer, info)


def submit(log: Log, certs: list[x509.Certificate], pre: bool = False) -> dict[str, Any]:
    endpoint = "add-pre-chain" if pre else "add-chain"
    status, doc = call(
        log.running.url + "ct/v1/" + endpoint, json.dumps(chain_json(certs)).encode()
    )
    assert status == 200, doc
    return doc


def sth(log: Log) -> ct.SignedTreeHead:
    status, doc = call(log.running.url + "ct/v1/get-sth")
    assert status == 200
    head = ct.SignedTreeHead.from_json(doc)
    assert head.verify(log.info.key)
    return head


def wait_for_size(log: Log, size: int) -> ct.SignedTreeHead:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        head = sth(log)
        if head.head.tree_size >= size:
            return head
        time.sleep(0.1)
    raise AssertionError(f"the tree did not reach {size} entries")


def tree_hash(leaf_hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes."""
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = merkle.split_point(len(leaf_hashes))
    return merkle.node_hash(tree_hash(leaf_hashes[:k]), tree_hash(leaf_hashes[k:]))


def test_the_log_list_names_the_log(log: Log, tmp_path: Path) -> None:
    doc = json.loads(log.running.log_list.read_text())
    (operator,) = doc["operators"]
    (entry,) = operator["logs"]
    assert entry["url"] == log.running.url
    assert entry["log_id"] == log.running.log_id
    assert entry["mmd"] == 1
    assert set(entry) >= {"description", "log_id", "key", "url", "mmd"}
    assert operator["name"].startswith("acmekit-")
    key_file = log.running.state_dir / "ct-log-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_scts_verify_and_entries_are_proven(log: Log) -> None:
    inter = log.issuer.intermediate_cert
    cert = leaf_certificate(log.issuer, "final.example")
    precert = leaf_certificate(log.issuer, "pre.example", precert=True)
    sct_doc = submit(log, [cert, inter])
    pre_doc = submit(log, [precert, inter], pre=True)

    sct = ct.SignedCertificateTimestamp.from_json(sct_doc)
    assert ct.verify_sct(sct, ct.SignedEntry.x509(der(cert)), log.info.key)
    pre_sct = ct.SignedCertificateTimestamp.from_json(pre_doc)
    pre_entry = ct.SignedEntry.precert(ct.precert_entry(precert, inter))
    assert ct.verify_sct(pre_sct, pre_entry, log.info.key)
    assert not ct.verify_sct(pre_sct, ct.SignedEntry.x509(der(precert)), log.info.key)

    # the same entry again: the same SCT
    assert submit(log, [cert, inter]) == sct_doc
    assert submit(log, [precert, inter], pre=True) == pre_doc

    first = wait_for_size(log, 2)
    status, got = call(log.running.url + f"ct/v1/get-entries?start=0&end={first.head.tree_size}")
    assert status == 200
    leaves = [base64.b64decode(e["leaf_input"]) for e in got["entries"]]
    assert len(leaves) == first.head.tree_size
    mine = {
        ct.parse_merkle_tree_leaf(leaf).entry: leaf
        for leaf in leaves
        if ct.parse_merkle_tree_leaf(leaf).timestamp in (sct.timestamp, pre_sct.timestamp)
    }
    assert set(mine) == {ct.SignedEntry.x509(der(cert)), pre_entry}

    for leaf in mine.values():
        leaf_hash = merkle.leaf_hash(leaf)
        size = first.head.tree_size
        q = urllib.parse.urlencode({"hash": base64.b64encode(leaf_hash), "tree_size": size})
        status, proof = call(log.running.url + "ct/v1/get-proof-by-hash?" + q)
        assert status == 200, proof
        path = [base64.b64decode(h) for h in proof["audit_path"]]
        assert merkle.verify_inclusion(
            leaf_hash, proof["leaf_index"], size, path, first.head.root_hash
        )
        status, both = call(
            log.running.url
            + f"ct/v1/get-entry-and-proof?leaf_index={proof['leaf_index']}&tree_size={size}"
        )
        assert status == 200
        assert base64.b64decode(both["leaf_input"]) == leaf
        assert both["audit_path"] == proof["audit_path"]

    # more entries, a later head, and a consistency proof between the two
    for i in range(5):
        submit(log, [leaf_certificate(log.issuer, f"more{i}.example"), inter])
    second = wait_for_size(log, first.head.tree_size + 5)
    q = f"first={first.head.tree_size}&second={second.head.tree_size}"
    status, cons = call(log.running.url + "ct/v1/get-sth-consistency?" + q)
    assert status == 200
    assert merkle.verify_consistency(
        first.head.tree_size,
        second.head.tree_size,
        [base64.b64decode(h) for h in cons["consistency"]],
        first.head.root_hash,
        second.head.root_hash,
    )

    status, roots = call(log.running.url + "ct/v1/get-roots")
    assert status == 200
    assert base64.b64encode(der(log.issuer.root_cert)).decode() in roots["certificates"]


def test_a_chain_without_its_root_and_one_with_it_are_the_same_entry(log: Log) -> None:
    inter, root = log.issuer.intermediate_cert, log.issuer.root_cert
    cert = leaf_certificate(log.issuer, "rooted.example")
    assert submit(log, [cert, inter]) == submit(log, [cert, inter, root])


def test_the_tiled_read_path_serves_the_same_tree(log: Log) -> None:
    inter = log.issuer.intermediate_cert
    submit(log, [leaf_certificate(log.issuer, "tiles.example", precert=True), inter], pre=True)
    head = wait_for_size(log, 1)
    size = head.head.tree_size
    status, body, cache = raw_with_headers(log.running.url + "checkpoint")
    assert (status, cache) == (200, "max-age=2")
    text = body.decode()
    note, _, signatures = text.partition("\n\n")
    origin, size_line, root_line = note.split("\n")
    assert origin == log.running.url.removeprefix("http://").rstrip("/")
    checkpoint_size = int(size_line)
    assert checkpoint_size >= size
    (line,) = signatures.strip().split("\n")
    dash, name, blob = line.split(" ")
    assert (dash, name) == ("\u2014", origin)
    sig = base64.b64decode(blob)
    assert sig[:4] == note_key_id(origin, log.info.log_id)
    timestamp = int.from_bytes(sig[4:12], "big")
    signed = ct.SignedTreeHead(
        ct.TreeHead(checkpoint_size, timestamp, base64.b64decode(root_line)),
        ct.DigitallySigned.decode(sig[12:]),
    )
    assert signed.verify(log.info.key)

    width = checkpoint_size % 256
    assert checkpoint_size < 256  # a small log: one partial tile
    status, tile, cache = raw_with_headers(log.running.url + f"tile/0/000.p/{width}")
    assert (status, cache) == (200, "public, max-age=604800, immutable")
    hashes = [tile[i : i + 32] for i in range(0, len(tile), 32)]
    assert tree_hash(hashes) == base64.b64decode(root_line)
    status, got = call(log.running.url + f"ct/v1/get-entries?start=0&end={width - 1}")
    leaves = [base64.b64decode(e["leaf_input"]) for e in got["entries"]]
    assert hashes == [merkle.leaf_hash(leaf) for leaf in leaves]
    status, data = raw(log.running.url + f"tile/data/000.p/{width}")
    assert status == 200
    expected = b"".join(
        tile_leaf(base64.b64decode(e["leaf_input"]), base64.b64decode(e["extra_data"]))
        for e in got["entries"]
    )
    assert data == expected
    fingerprint = hashlib.sha256(der(inter)).hexdigest()
    assert fingerprint.encode() not in data  # fingerprints are raw bytes
    assert bytes.fromhex(fingerprint) in data
    status, issuer_der = raw(log.running.url + f"issuer/{fingerprint}")
    assert status == 200 and issuer_der == der(inter)
    assert raw_with_headers(log.running.url + "tile/0/000")[::2] == (404, "no-store")
    assert raw(log.running.url + "issuer/" + "00" * 32)[0] == 404


def test_bad_requests_get_4xx_json(log: Log, tmp_path: Path) -> None:
    inter = log.issuer.intermediate_cert
    other = ca_hierarchy(tmp_path / "other")
    cert = leaf_certificate(log.issuer, "bad.example")
    precert = leaf_certificate(log.issuer, "badpre.example", precert=True)
    size = wait_for_size(log, 1).head.tree_size
    add, pre = log.running.url + "ct/v1/add-chain", log.running.url + "ct/v1/add-pre-chain"
    body = lambda certs: json.dumps(chain_json(certs)).encode()  # noqa: E731
    cases: list[tuple[str, bytes | None, str, int]] = [
        (add, b"{not json", "not JSON", 400),
        (add, b'{"chain": "x"}', "chain", 400),
        (add, b'{"chain": ["***"]}', "base64", 400),
        (add, b'{"chain": []}', "empty", 400),
        (add, b'{"chain": ["AAAA"]}', "DER", 400),
        (add, body([self_signed("stranger")]), "accepted root", 400),
        (add, body([leaf_certificate(other, "x.example"), other.intermediate_cert]), "root", 400),
        (
            add,
            body([leaf_certificate(log.issuer, "y.example", signer=other), inter]),
            "signed",
            400,
        ),
        (add, body([precert, inter]), "poison", 400),
        (pre, body([cert, inter]), "poison", 400),
        (add, b"x" * (10 * 1024 * 1024), "larger", 413),
        (log.running.url + "ct/v1/get-entries?start=5&end=2", None, "start", 400),
        (
            log.running.url + f"ct/v1/get-entries?start={size + 10}&end={size + 20}",
            None,
            "beyond",
            400,
        ),
        (log.running.url + "ct/v1/get-entries?start=a&end=2", None, "integer", 400),
        (log.running.url + "ct/v1/get-entries?end=2", None, "missing", 400),
        (
            log.running.url + f"ct/v1/get-sth-consistency?first=1&second={size + 100}",
            None,
            "beyond",
            400,
        ),
        (
            log.running.url + f"ct/v1/get-proof-by-hash?hash={base64.b64encode(b'z' * 32).decode()}"
            f"&tree_size={size}",
            None,
            "no leaf",
            404,
        ),
        (
            log.running.url + f"ct/v1/get-proof-by-hash?hash=%%%&tree_size={size}",
            None,
            "base64",
            400,
        ),
        (
            log.running.url + f"ct/v1/get-entry-and-proof?leaf_index={size}&tree_size={size}",
            None,
            "leaf_index",
            400,
        ),
        (log.running.url + "ct/v1/get-sth", b"{}", "GET", 405),
        (log.running.url + "ct/v1/nothing", None, "no such", 404),
    ]
    for url, payload, words, want in cases:
        status, doc = call(url, payload)
        assert status == want, (url, payload and payload[:40], doc)
        assert words.lower() in doc["error_message"].lower(), (url, doc)
    assert sth(log).head.tree_size >= size  # and the log still serves


def test_the_temporal_shard_refuses_certificates_outside_it(tmp_path: Path) -> None:
    issuer = ca_hierarchy(tmp_path / "ca")
    config = tmp_path / "ct.toml"
    config.write_text('[ct]\nnot_after_start = 2030-01-01\nnot_after_end = "2031-01-01"\n')
    extra = ["--config", str(config), "--operator", "Example Operator"]
    with running_ct_log(tmp_path / "log", tmp_path / "ca" / "root.pem", extra=extra) as running:
        inside = leaf_certificate(issuer, "in.example", not_after=datetime(2030, 6, 1, tzinfo=UTC))
        outside = leaf_certificate(issuer, "out.example")
        url = running.url + "ct/v1/add-chain"
        ok, _ = call(url, json.dumps(chain_json([inside, issuer.intermediate_cert])).encode())
        bad, doc = call(url, json.dumps(chain_json([outside, issuer.intermediate_cert])).encode())
        assert (ok, bad) == (200, 400)
        assert "shard" in doc["error_message"]
        (info,) = ct.LogList.loads(running.log_list.read_text()).logs
        assert info.operator == "Example Operator"
        assert info.temporal_start == datetime(2030, 1, 1, tzinfo=UTC)
        assert info.temporal_end == datetime(2031, 1, 1, tzinfo=UTC)


def test_two_logs_without_an_operator_are_two_operators(log: Log, tmp_path: Path) -> None:
    with running_ct_log(tmp_path / "log", log.running.state_dir.parent / "ca" / "root.pem") as b:
        (info,) = ct.LogList.loads(b.log_list.read_text()).logs
    assert info.operator != log.info.operator
    assert info.log_id != log.info.log_id


def test_a_missing_roots_file_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "acmekit", "ct", "--listen", "127.0.0.1:0", "--state-dir",
         str(tmp_path / "s"), "--roots", str(tmp_path / "none.pem")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "none.pem does not exist" in done.stderr


def _tile_leaves(data: bytes) -> list[tuple[ct.TimestampedEntry, bytes, list[bytes]]]:
    """A data tile read as static-ct-api's `TileLeaf`s: TimestampedEntry, the
    precertificate for a precert entry, and the chain's fingerprints."""
    r = ct.Reader(data)
    out = []
    while r.pos < len(data):
        stamp = r.uint(8)
        kind = r.uint(2)
        if kind == ct.LogEntryType.X509_ENTRY:
            entry = ct.SignedEntry.x509(r.opaque(3))
        else:
            key_hash = r.take(32)
            entry = ct.SignedEntry.precert(ct.PrecertEntry(key_hash, r.opaque(3)))
        extensions = r.opaque(2)
        precert = r.opaque(3) if kind == ct.LogEntryType.PRECERT_ENTRY else b""
        chain = r.opaque(2)
        fingerprints = [chain[i : i + 32] for i in range(0, len(chain), 32)]
        out.append((ct.TimestampedEntry(stamp, entry, extensions), precert, fingerprints))
    return out


def test_an_sct_names_the_leaf_index_where_tiled_tooling_finds_the_entry(log: Log) -> None:
    """static-ct-api's `leaf_index` SCT extension: the index the SCT carries is where
    the entry sits in tile/data and in the RFC 6962 API, and the TimestampedEntry
    there carries the same extensions."""
    inter = log.issuer.intermediate_cert
    precerts = [leaf_certificate(log.issuer, f"indexed{i}.example", precert=True) for i in range(3)]
    scts = [
        ct.SignedCertificateTimestamp.from_json(submit(log, [p, inter], pre=True)) for p in precerts
    ]
    cert = leaf_certificate(log.issuer, "indexed-final.example")
    scts.append(ct.SignedCertificateTimestamp.from_json(submit(log, [cert, inter])))
    entries = [ct.SignedEntry.precert(ct.precert_entry(p, inter)) for p in precerts]
    entries.append(ct.SignedEntry.x509(der(cert)))
    indices = []
    for sct, entry in zip(scts, entries, strict=True):
        assert len(sct.extensions) == 8  # static-ct-api: only leaf_index, 8 bytes
        assert ct.verify_sct(sct, entry, log.info.key)  # the signature covers the index
        index = ct.leaf_index_of(sct.extensions)
        assert index is not None
        indices.append(index)
    assert len(set(indices)) == 4

    head = wait_for_size(log, max(indices) + 1)
    size = head.head.tree_size
    tile_no, width = size // 256, size % 256
    assert tile_no == 0 and width > 0  # a small log: one partial tile
    status, data = raw(log.running.url + f"tile/data/000.p/{width}")
    assert status == 200
    tile_leaves = _tile_leaves(data)
    assert len(tile_leaves) == width
    status, tile = raw(log.running.url + f"tile/0/000.p/{width}")
    assert status == 200
    for sct, entry, index, precert in zip(scts, entries, indices, [*precerts, None], strict=True):
        found, pre_der, fingerprints = tile_leaves[index]
        assert found.entry == entry
        assert found.timestamp == sct.timestamp
        assert found.extensions == sct.extensions
        assert ct.leaf_index_of(found.extensions) == index
        assert pre_der == (der(precert) if precert is not None else b"")
        assert hashlib.sha256(der(inter)).digest() in fingerprints
        # the level-0 tile holds the same leaf's hash
        leaf_hash = merkle.leaf_hash(ct.merkle_tree_leaf(found))
        assert tile[32 * index : 32 * index + 32] == leaf_hash
        # and the RFC 6962 API serves it at the same index, with a proof
        status, both = call(
            log.running.url + f"ct/v1/get-entry-and-proof?leaf_index={index}&tree_size={size}"
        )
        assert status == 200
        assert base64.b64decode(both["leaf_input"]) == ct.merkle_tree_leaf(found)
        path = [base64.b64decode(h) for h in both["audit_path"]]
        assert merkle.verify_inclusion(leaf_hash, index, size, path, head.head.root_hash)
    # a resubmission gets the same SCT, index included
    again = submit(log, [precerts[0], inter], pre=True)
    assert ct.SignedCertificateTimestamp.from_json(again) == scts[0]
