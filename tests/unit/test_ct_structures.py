"""RFC 6962 structures: the bytes of leaves, SCTs and tree heads, SCT and STH signatures,
the precertificate TBS, and Chrome's v3 log list."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.ct.tiles import note_key_id, tile_index_path
from acmekit.protocol import ct
from acmekit_testkit.ctlog import ca_hierarchy, leaf_certificate

KEY = ec.generate_private_key(ec.SECP256R1())


def test_a_merkle_tree_leaf_is_laid_out_as_section_3_4() -> None:
    entry = ct.TimestampedEntry(0x0102030405060708, ct.SignedEntry.x509(b"CERT"))
    leaf = ct.merkle_tree_leaf(entry)
    assert leaf == bytes.fromhex("000001020304050607080000000004") + b"CERT" + b"\0\0"
    assert ct.parse_merkle_tree_leaf(leaf) == entry
    pre = ct.SignedEntry.precert(ct.PrecertEntry(b"k" * 32, b"TBS"))
    leaf = ct.merkle_tree_leaf(ct.TimestampedEntry(1, pre))
    assert leaf[10:12] == b"\x00\x01" and leaf[12:44] == b"k" * 32
    assert leaf[44:47] == b"\x00\x00\x03" and leaf[47:50] == b"TBS"
    assert ct.parse_merkle_tree_leaf(leaf).entry == pre
    with pytest.raises(ct.CtError):
        ct.parse_merkle_tree_leaf(leaf[:-1])


def test_scts_sign_verify_encode_and_round_trip() -> None:
    entry = ct.SignedEntry.x509(b"certificate")
    sct = ct.sign_sct(KEY, 1700000000000, entry)
    assert (
        sct.log_id
        == hashlib.sha256(
            KEY.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
    )
    assert ct.verify_sct(sct, entry, KEY.public_key())
    assert not ct.verify_sct(sct, ct.SignedEntry.x509(b"other"), KEY.public_key())
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert not ct.verify_sct(sct, entry, other)
    wire = sct.encode()
    assert wire[0] == 0 and wire[1:33] == sct.log_id
    assert wire[33:41] == (1700000000000).to_bytes(8, "big") and wire[41:43] == b"\0\0"
    assert wire[43:45] == b"\x04\x03"  # sha256, ecdsa
    assert ct.SignedCertificateTimestamp.decode(wire) == sct
    assert ct.SignedCertificateTimestamp.from_json(sct.to_json()) == sct
    listed = ct.encode_sct_list([sct, sct])
    assert int.from_bytes(listed[:2], "big") == len(listed) - 2
    assert ct.decode_sct_list(listed) == [sct, sct]
    signed_input = ct.sct_signature_input(1, entry)
    assert signed_input[:2] == b"\x00\x00" and signed_input[-2:] == b"\0\0"


def test_tree_heads_sign_over_section_3_5() -> None:
    head = ct.TreeHead(7, 1234, b"r" * 32)
    assert ct.sth_signature_input(head) == (
        b"\x00\x01" + (1234).to_bytes(8, "big") + (7).to_bytes(8, "big") + b"r" * 32
    )
    sth = ct.sign_tree_head(KEY, head)
    assert sth.verify(KEY.public_key())
    assert ct.SignedTreeHead.from_json(sth.to_json()) == sth
    forged = ct.SignedTreeHead(ct.TreeHead(8, 1234, b"r" * 32), sth.signature)
    assert not forged.verify(KEY.public_key())


def test_the_precertificate_tbs_drops_the_poison_as_the_final_certificate_drops_its_scts(
    tmp_path: Path,
) -> None:
    issuer = ca_hierarchy(tmp_path)
    pre = leaf_certificate(issuer, "a.example", precert=True)
    assert ct.is_precertificate(pre)
    builder = (
        x509.CertificateBuilder()
        .subject_name(pre.subject)
        .issuer_name(pre.issuer)
        .public_key(pre.public_key())
        .serial_number(pre.serial_number)
        .not_valid_before(pre.not_valid_before_utc)
        .not_valid_after(pre.not_valid_after_utc)
    )
    for ext in pre.extensions:
        if ext.oid != ct.POISON_OID:
            builder = builder.add_extension(ext.value, ext.critical)
    sct = ct.sign_sct(KEY, 1, ct.SignedEntry.x509(b"x"))
    sct_list = ct.encode_sct_list([sct])
    octets = b"\x04" + bytes([0x81, len(sct_list)]) + sct_list
    builder = builder.add_extension(x509.UnrecognizedExtension(ct.SCT_LIST_OID, octets), False)
    key = issuer.intermediate_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    final = builder.sign(key, hashes.SHA256())
    pre_entry = ct.precert_entry(pre, issuer.intermediate_cert)
    # cryptography's own reading of the final certificate's TBS without the SCT list
    assert pre_entry.tbs_certificate == final.tbs_precertificate_bytes
    assert ct.final_certificate_entry(final, issuer.intermediate_cert) == pre_entry
    assert (
        pre_entry.issuer_key_hash == hashlib.sha256(ct.spki_der(issuer.intermediate_cert)).digest()
    )


def test_the_log_list_round_trips_in_chromes_v3_schema() -> None:
    info = ct.LogInfo(
        description="test log",
        key=KEY.public_key(),
        url="http://127.0.0.1:1/",
        mmd=60,
        operator="op",
        temporal_start=datetime(2030, 1, 1, tzinfo=UTC),
        temporal_end=datetime(2031, 1, 1, tzinfo=UTC),
        usable_since=datetime(2026, 1, 1, tzinfo=UTC),
    )
    listed = ct.LogList((info,), datetime(2026, 1, 2, tzinfo=UTC))
    doc = listed.to_json()
    (log,) = doc["operators"][0]["logs"]
    assert log["temporal_interval"] == {
        "start_inclusive": "2030-01-01T00:00:00Z",
        "end_exclusive": "2031-01-01T00:00:00Z",
    }
    assert log["state"] == {"usable": {"timestamp": "2026-01-01T00:00:00Z"}}
    again = ct.LogList.loads(listed.dumps())
    assert again.logs == (info,)
    assert again.by_id(info.log_id) == info
    log["log_id"] = ct.b64(b"\0" * 32)
    with pytest.raises(ct.CtError, match="log_id"):
        ct.LogList.from_json(doc)
    with pytest.raises(ct.CtError):
        ct.LogList.loads("[]")


def test_tile_paths_and_note_key_ids_follow_c2sp() -> None:
    assert tile_index_path(0) == "000"
    assert tile_index_path(1234067) == "x001/x234/067"
    assert tile_index_path(1000) == "x001/000"
    log_id = b"\x01" * 32
    want = hashlib.sha256(b"example.com/log\n\x05" + log_id).digest()[:4]
    assert note_key_id("example.com/log", log_id) == want


def test_the_leaf_index_extension_is_static_ct_apis_eight_bytes() -> None:
    """extension_type 0, a two-byte length 5, and a big-endian uint40."""
    assert ct.leaf_index_extension(0x0102030405) == bytes.fromhex("00000501 02030405")
    assert ct.leaf_index_extension(7) == bytes.fromhex("0000050000000007")
    assert ct.leaf_index_of(ct.leaf_index_extension(2**40 - 1)) == 2**40 - 1
    assert ct.leaf_index_of(b"") is None
    # an unknown extension next to it is skipped; one twice or a wrong length refused
    assert ct.leaf_index_of(bytes.fromhex("070001ff") + ct.leaf_index_extension(9)) == 9
    with pytest.raises(ct.CtError):
        ct.leaf_index_of(ct.leaf_index_extension(1) + ct.leaf_index_extension(2))
    with pytest.raises(ct.CtError):
        ct.leaf_index_of(bytes.fromhex("00000400000001"))
    with pytest.raises(ct.CtError):
        ct.leaf_index_extension(2**40)
    key = ec.generate_private_key(ec.SECP256R1())
    entry = ct.SignedEntry.x509(b"cert")
    sct = ct.sign_sct(key, 1, entry, ct.leaf_index_extension(3))
    assert ct.verify_sct(sct, entry, key.public_key())
    assert ct.SignedCertificateTimestamp.decode(sct.encode()) == sct
    stripped = ct.SignedCertificateTimestamp(sct.log_id, sct.timestamp, sct.signature)
    assert not ct.verify_sct(stripped, entry, key.public_key())


@pytest.mark.parametrize(
    "entry",
    [
        ct.SignedEntry.x509(b"CERT" * 70),
        ct.SignedEntry.precert(ct.PrecertEntry(b"k" * 32, b"TBS" * 90)),
    ],
    ids=["x509", "precert"],
)
def test_one_encoding_is_both_the_sct_signature_input_and_the_merkle_leaf(
    entry: ct.SignedEntry,
) -> None:
    # The log builds these bytes once per entry, signs them and stores them as the leaf.
    extensions = ct.leaf_index_extension(0x0102030405)
    built = ct.signed_leaf(0x0A0B0C0D0E0F, entry.encode(), extensions)
    assert built == ct.sct_signature_input(0x0A0B0C0D0E0F, entry, extensions)
    assert built == ct.merkle_tree_leaf(ct.TimestampedEntry(0x0A0B0C0D0E0F, entry, extensions))
    assert ct.parse_merkle_tree_leaf(built).extensions == extensions
    sct = ct.SignedCertificateTimestamp(
        ct.log_id(KEY.public_key()), 0x0A0B0C0D0E0F, ct.sign(KEY, built), extensions
    )
    assert ct.verify_sct(sct, entry, KEY.public_key())
