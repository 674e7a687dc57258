"""Registered domains as the CA's rate limits and the fleet's accounting count them."""

from __future__ import annotations

import pytest

from acmekit.domains import registered_domain, registered_domains


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.com", "example.com"),
        ("a.b.c.example.com", "example.com"),
        ("example.com", "example.com"),
        ("WWW.Example.COM.", "example.com"),
        ("*.example.com", "example.com"),
        ("*.shop.example.com", "example.com"),
        ("shop.example.co.uk", "example.co.uk"),
        ("x.user.github.io", "user.github.io"),  # a private suffix of the list
        ("a1.limit.test", "limit.test"),
        ("co.uk", "co.uk"),  # a bare public suffix counts for itself
        ("localhost", "localhost"),
        # An address has no public suffix: it counts for itself, in canonical form,
        # never for its last two labels ("0.1") as the list would make of it.
        ("127.0.0.1", "127.0.0.1"),
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
    ],
)
def test_registered_domain(name: str, expected: str) -> None:
    assert registered_domain(name) == expected


def test_registered_domains_are_distinct_and_sorted() -> None:
    names = ["z.other.org", "x.example.com", "y.example.com", "192.0.2.1", "192.0.2.2"]
    assert registered_domains(names) == ("192.0.2.1", "192.0.2.2", "example.com", "other.org")
