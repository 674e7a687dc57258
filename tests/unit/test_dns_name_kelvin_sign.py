"""A dns identifier is ASCII letters, digits, hyphens and dots (RFC 1035 §2.3.1; an
internationalized name is sent as its A-labels, RFC 5891): the name is lower-cased
before its labels are checked, and one code point lower-cases to ASCII, the Kelvin
sign (U+212A) to "k". Such a name was taken as another, ASCII, one: an order for
"kexample.test" made from a payload that named "\u212aexample.test". It is refused as
any other name with a character outside those."""

from __future__ import annotations

import sys

import pytest

from acmekit.protocol.messages import parse_dns_name, parse_identifiers
from acmekit.protocol.problems import AcmeError


def test_only_the_kelvin_sign_lower_cases_to_ascii() -> None:
    found = [c for c in range(128, sys.maxunicode + 1) if chr(c).lower().isascii()]
    assert found == [0x212A]


@pytest.mark.parametrize("name", ["\u212aexample.test", "a.\u212a.test", "*.\u212a8s.test"])
def test_a_name_with_the_kelvin_sign_is_refused(name: str) -> None:
    with pytest.raises(AcmeError) as err:
        parse_dns_name(name)
    assert err.value.problem.type.endswith(":rejectedIdentifier")
    assert "characters other than letters, digits and hyphen" in err.value.problem.detail


def test_a_list_with_both_spellings_is_refused_not_merged() -> None:
    docs = [
        {"type": "dns", "value": "kexample.test"},
        {"type": "dns", "value": "\u212aexample.test"},
    ]
    with pytest.raises(AcmeError):
        parse_identifiers(docs)
