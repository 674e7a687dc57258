"""The dns label check (`messages._check_label`) takes exactly the labels it took when it
tested each character in turn (`c.isascii() and (c.isalnum() or c == "-")`), and no longer
runs Python code per character.

Compared with that check, kept here: every string of up to two characters over all of
ASCII and non-ASCII letters and digits (which `str.isalnum` takes and the rule does not),
each also inside a longer label and around a hyphen, and random text."""

from __future__ import annotations

import sys
from itertools import product
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acmekit.protocol import messages
from acmekit.protocol.messages import _check_label, _rejected, parse_dns_name
from acmekit.protocol.problems import AcmeError

# All of ASCII, and characters that str.isalnum() or str.isdigit() take outside ASCII:
# Latin letters with marks, Arabic-Indic and Devanagari digits, superscripts, full-width
# digits and letters, a titlecase letter, letters whose case maps grow ('ß', 'İ'), a
# Roman numeral, CJK, and non-alphanumerics (no-break space, soft hyphen, en dash,
# zero-width space).
NON_ASCII = "éÉßİǅ٣३²³０９ＡｚⅫ漢ñø\u00a0\u00ad\u2013\u200b"
ALPHABET = "".join(chr(i) for i in range(128)) + NON_ASCII


def _old_check_label(label: str, value: str) -> None:
    """The check as it was, character by character."""
    if not label:
        raise _rejected(value, "empty label")
    if len(label) > 63:
        raise _rejected(value, "label longer than 63 octets")
    if label.startswith("-") or label.endswith("-"):
        raise _rejected(value, "label starts or ends with a hyphen")
    if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
        raise _rejected(value, "label has characters other than letters, digits and hyphen")


def _verdict(check: Any, label: str) -> str | None:
    try:
        check(label, label)
    except AcmeError as e:
        return str(e)
    return None


def _labels() -> list[str]:
    short = ["", *ALPHABET, *("".join(p) for p in product(ALPHABET, repeat=2))]
    # inside a label, so that the character rule and not the hyphen rule decides, and
    # with hyphens inside (the hyphens taken out before the letters-and-digits test)
    return short + [f"a{s}0" for s in short] + [f"x{s}-{s}9" for s in short]


def test_the_same_labels_are_accepted_and_refused_as_before() -> None:
    labels = _labels()
    assert len(labels) > 3 * len(ALPHABET) ** 2
    differ = [s for s in labels if _verdict(_check_label, s) != _verdict(_old_check_label, s)]
    assert differ == []
    accepted = {s for s in labels if len(s) == 2 and _verdict(_check_label, s) is None}
    # what the rule allows of two characters: letters and digits of ASCII, no hyphen at
    # either end
    ldh = [chr(c) for c in range(128) if chr(c).isalnum()]
    assert accepted == {a + b for a in ldh for b in ldh}


@pytest.mark.parametrize("char", list(NON_ASCII))
def test_non_ascii_letters_and_digits_are_refused(char: str) -> None:
    for label in (char, f"a{char}", f"a-{char}1", f"{char}{char}"):
        with pytest.raises(AcmeError, match="other than letters, digits and hyphen"):
            _check_label(label, label)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=70) | st.text(alphabet="aZ09-_. é٣²０", max_size=12))
def test_random_labels_agree_with_the_old_check(label: str) -> None:
    assert _verdict(_check_label, label) == _verdict(_old_check_label, label)


def test_a_name_is_checked_without_code_per_character() -> None:
    """No generator or other Python frame of `messages` runs beneath the label check:
    its cost no longer grows with a Python step per character."""
    entered: list[str] = []

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename == messages.__file__:
            entered.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        assert parse_dns_name("Some-Host01.Example-Zone.test") == "some-host01.example-zone.test"
    finally:
        sys.setprofile(None)
    assert "<genexpr>" not in entered
    assert set(entered) <= {"parse_dns_name", "_check_label", "looks_like_ip"}
