"""A site's names follow the CA's label rules (docs/security.md, "Identifiers the CA does
not issue for"): an `xn--` label must be a valid IDNA 2008 A-label, and no other label
has `--` in its third and fourth places. A name the CA would refuse at every order is
refused when it is added (the API's 400), and never becomes an on-demand site."""

from __future__ import annotations

import pytest

from acmekit.fleet.model import normalize_names
from acmekit.fleet.ondemand import host_name


@pytest.mark.parametrize(
    "name",
    ["xn--zz.example.com", "shop.xn--ls8h.example.com", "*.xn--zz.example.com",
     "ab--cd.example.com", "XN--ZZ.example.com"],
)  # fmt: skip
def test_a_name_the_ca_refuses_is_no_site_name(name: str) -> None:
    with pytest.raises(ValueError, match="is not a DNS name"):
        normalize_names([name])
    assert host_name(name) is None


def test_valid_a_labels_are_names() -> None:
    assert normalize_names(["xn--bcher-kva.example.com", "*.XN--BCHER-KVA.example.com"]) == (
        "xn--bcher-kva.example.com",
        "*.xn--bcher-kva.example.com",
    )
