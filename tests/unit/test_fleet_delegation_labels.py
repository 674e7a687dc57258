"""The CNAME target the fleet gives a customer for dns-01 is a DNS name for every site
name: a name of more than 63 characters made, dots to dashes, one label longer than a
label may be (RFC 1035 §2.3.4), which no DNS provider would take as a target."""

from __future__ import annotations

import dns.name

from acmekit.fleet.delegation import account_delegation_target, delegation_target

ZONE = "acme.delegation.test"
LONG = "checkout-eu-west-1.payments-gateway.store-front.bigcustomer-example.com"


def _labels(target: str) -> list[str]:
    dns.name.from_text(target)  # raises LabelTooLong past 63 octets
    return target.rstrip(".").split(".")


def test_a_long_name_gets_a_target_of_short_labels() -> None:
    assert len(LONG) > 63
    target = delegation_target(LONG, ZONE)
    assert all(len(label) <= 63 for label in _labels(target))
    assert target.endswith(f".{ZONE}.")
    other = delegation_target(LONG.replace("bigcustomer", "bigcustomer2"), ZONE)
    assert other != target  # the same first characters, another name: another target
    assert delegation_target("*." + LONG, ZONE) == target  # a wildcard, at its base
    url = "https://ca.test/acme/acct/1"
    assert all(len(x) <= 63 for x in _labels(account_delegation_target(LONG, ZONE, url)))


def test_a_short_name_keeps_its_target() -> None:
    assert delegation_target("Shop.Example.com", ZONE) == f"shop-example-com.{ZONE}."
