"""`jsontext.loads` skips whitespace with a one-character test before the regular
expression, and bounds nesting by counting brackets before it measures depth; it must
accept and refuse what `json.loads` on the UTF-8 text, with the depth and the surrogate
rules, does."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from acmekit.protocol import jsontext
from acmekit.protocol.problems import AcmeError

N = jsontext.MAX_DEPTH


def _reference(text: bytes | str) -> tuple[bool, Any]:
    try:
        value = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, RecursionError):
        return False, None
    if jsontext.depth(value) > N:
        return False, None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False, None
    return True, value


def _new(text: bytes | str) -> tuple[bool, Any]:
    try:
        return True, jsontext.loads(text)
    except AcmeError:
        return False, None


def _nested(levels: int, inner: str = "1", siblings: int = 0) -> str:
    """`levels` deep, alternating arrays and objects, with `siblings` flat brackets."""
    text = inner
    for i in range(levels):
        text = f"[{text}]" if i % 2 else f'{{"k":{text}}}'
    return "[" + ",".join([text] + ["[]"] * siblings) + "]" if siblings else text


VALUES = [
    "1",
    '"a"',
    "{}",
    '{"protected":"eyJ","payload":"","signature":"abc"}',
    '{"a":"[[[[{{{{"}',
    '"' + "[" * (N + 5) + '"',
    _nested(N),
    _nested(N + 1),
    _nested(N - 1, siblings=5),
    _nested(3, siblings=N),
    _nested(N, siblings=3),
    _nested(N - 2, '"x"', siblings=N),
    '"\\ud800"',
    '"\\ud83d\\ude00"',
]
SPACES = ["", " ", "\t", "\n", "\r\n", "  \t", "\x0b", "\x0c", "\u00a0", "\ufeff"]


@pytest.mark.parametrize("value", VALUES)
def test_whitespace_around_a_value_reads_as_before(value: str) -> None:
    for before, after in itertools.product(SPACES, repeat=2):
        text = before + value + after
        for form in (text, text.encode("utf-8")):
            assert _new(form) == _reference(form), repr(form)


def test_bracket_counts_around_the_bound_read_as_before() -> None:
    for levels in range(N - 3, N + 3):
        for siblings in range(N + 3):
            text = _nested(levels, siblings=siblings)
            for form in (text, text.encode("ascii")):
                assert _new(form) == _reference(form), (levels, siblings)


def test_random_texts_read_as_before() -> None:
    rng = random.Random(16)
    pieces = ["[", "]", "{", "}", '"k":', '"', ",", "1", " ", "\n", "\\", "null"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30)))
        for form in (text, text.encode("ascii")):
            assert _new(form) == _reference(form), repr(form)
