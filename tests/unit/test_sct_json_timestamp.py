"""A CT log's SCT and STH numbers are JSON numbers in uint64 (RFC 6962 §4.1, §4.3):
int() read a string of U+0661 (ARABIC-INDIC DIGIT ONE) as 1, a float or true as a
number, and a negative timestamp passed from_json to raise OverflowError, not the
CtError (a ValueError) the submitter counts as the log's failure, in verify_sct."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol import ct

KEY = ec.generate_private_key(ec.SECP256R1())
ENTRY = ct.SignedEntry.x509(b"certificate")


def _sct_doc(timestamp: Any) -> dict[str, Any]:
    return {**ct.sign_sct(KEY, 1, ENTRY).to_json(), "timestamp": timestamp}


@pytest.mark.parametrize("timestamp", ["\u0661", "1", 1.0, True, -1, 1 << 64])
def test_an_sct_timestamp_is_a_uint64_json_number(timestamp: Any) -> None:
    with pytest.raises(ct.CtError, match="timestamp"):
        ct.SignedCertificateTimestamp.from_json(_sct_doc(timestamp))


@pytest.mark.parametrize("field", ["tree_size", "timestamp"])
def test_an_sth_number_is_a_uint64_json_number(field: str) -> None:
    doc = ct.sign_tree_head(KEY, ct.TreeHead(5, 1700000000000, b"r" * 32)).to_json()
    assert ct.SignedTreeHead.from_json(doc).head.tree_size == 5
    with pytest.raises(ct.CtError, match=field):
        ct.SignedTreeHead.from_json({**doc, field: "\u0665"})


def test_an_sct_with_an_integer_timestamp_is_read_and_verifies() -> None:
    sct = ct.SignedCertificateTimestamp.from_json(_sct_doc(1))
    assert sct.timestamp == 1 and ct.verify_sct(sct, ENTRY, KEY.public_key())
