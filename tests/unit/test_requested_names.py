"""The names a user asks for, checked as certbot's enforce_domain_sanity checks them."""

from __future__ import annotations

import re

import pytest

from acmekit.certbot.requested import BadName, requested_address, requested_domain


def test_a_name_is_lower_cased_and_loses_its_trailing_dot() -> None:
    assert requested_domain("WWW.Example.TEST.") == "www.example.test"
    assert requested_domain("*.Example.test") == "*.example.test"
    assert requested_domain("xn--bcher-kva.test") == "xn--bcher-kva.test"


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("bücher.test", "non-ASCII domain names are not supported"),
        ("https://a.test", "is a URL, not a domain name; give it without 'https://'"),
        ("http://a.test/x", "is a URL"),
        ("192.0.2.1", "is an IP address; give it with --ip-address"),
        ("2001:db8::1", "is an IP address"),
        ("a..test", "has an empty label"),
        (".a.test", "has an empty label"),
        ("x" * 64 + ".test", "has a label longer than 63 octets"),
        (".".join(["abcdefghi"] * 26), "is longer than 255 octets"),
    ],
)
def test_what_certbot_refuses_is_named(given: str, reason: str) -> None:
    with pytest.raises(BadName, match=re.escape(reason)):
        requested_domain(given)


def test_an_address_is_written_canonically() -> None:
    assert requested_address(" 2001:DB8:0::1 ") == "2001:db8::1"
    assert requested_address("127.0.0.1") == "127.0.0.1"
    with pytest.raises(BadName, match=re.escape("a.test is not an IP address")):
        requested_address("a.test")
