"""A site's names are DNS names: one whose last label is all digits is an IPv4 address
(or nothing), which the client would order as an `ip` identifier (RFC 8738) and
validate by http-01 at that address. Refused when added, and never an on-demand site
(a TLS client may send anything as its server name)."""

from __future__ import annotations

import pytest

from acmekit.fleet.model import normalize_names
from acmekit.fleet.ondemand import host_name


@pytest.mark.parametrize("name", ["192.0.2.10", "10.0.0.1", "shop.123", "*.1.2.3"])
def test_an_address_is_no_site_name(name: str) -> None:
    with pytest.raises(ValueError, match="is not a DNS name"):
        normalize_names([name])
    assert host_name(name) is None


def test_digits_elsewhere_are_fine() -> None:
    assert normalize_names(["1.2.3.example", "123.example"]) == ("1.2.3.example", "123.example")
