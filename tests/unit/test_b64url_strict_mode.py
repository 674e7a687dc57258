"""`jose.b64d` checks its alphabet with binascii's strict mode and three one-character
searches instead of a regular expression; it must accept and refuse exactly what the
expression-based version did (RFC 7515 §2: base64url, no padding, one encoding a value).
"""

from __future__ import annotations

import binascii
import itertools
import random
import re

import pytest

from acmekit.protocol import jose
from acmekit.protocol.problems import AcmeError

_URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_VALUE = {c: i for i, c in enumerate(_URLSAFE)}


def _reference(text: object) -> bytes | None:
    """The expression-based b64d as it was; None where it refused."""
    if not isinstance(text, str) or len(text) % 4 == 1 or not _ALPHABET.fullmatch(text):
        return None
    try:
        padded = text.encode("ascii").translate(bytes.maketrans(b"-_", b"+/"))
        raw = binascii.a2b_base64(padded + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    spare = (0, 0, 0b1111, 0b11)[len(text) % 4]
    if spare and _VALUE[text[-1]] & spare:
        return None
    return raw


def _new(text: object) -> bytes | None:
    try:
        return jose.b64d(text)  # type: ignore[arg-type]
    except AcmeError:
        return None


# The alphabet, its neighbours, and what base64 or a transport might slip in.
_TRICKY = _URLSAFE + "+/= \t\r\n\x00\x0b\x0c.!%~\x7f\x80é\u00ff\u0100\u2028\ufeff\U0001f600"


def test_every_short_text_reads_as_before() -> None:
    for size in range(4):
        for chars in itertools.product(_TRICKY, repeat=size):
            text = "".join(chars)
            assert _new(text) == _reference(text), repr(text)


def test_every_character_in_every_place_of_a_value_reads_as_before() -> None:
    rng = random.Random(7)
    for size in (4, 6, 7, 8, 43, 86):
        base = "".join(rng.choice(_URLSAFE) for _ in range(size))
        for code in range(0x300):
            for at in (0, size // 2, size - 1):
                for text in (base[:at] + chr(code) + base[at + 1 :], base[:at] + chr(code)):
                    assert _new(text) == _reference(text), repr(text)


def test_random_values_read_as_before() -> None:
    rng = random.Random(16)
    for _ in range(20_000):
        text = "".join(rng.choice(_TRICKY) for _ in range(rng.randrange(0, 24)))
        assert _new(text) == _reference(text), repr(text)
        data = rng.randbytes(rng.randrange(0, 40))
        encoded = jose.b64e(data)
        assert _new(encoded) == _reference(encoded) == data


@pytest.mark.parametrize("value", [None, b"AQ", 1, ["AQ"]])
def test_a_value_not_text_is_refused(value: object) -> None:
    assert _new(value) is None and _reference(value) is None
