"""The addresses the validation authority refuses to connect to (IANA special-purpose
registries), and the operator's exceptions."""

from __future__ import annotations

import ipaddress

import pytest

from acmekit.server.validation.reserved import (
    RESERVED,
    AddressPolicy,
    parse_networks,
    reserved_because,
)


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "127.0.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "203.0.113.9",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::",
        "::1",
        "fd00::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
    ],
)
def test_reserved_addresses_are_refused(address: str) -> None:
    why = AddressPolicy().refusal(address)
    assert why is not None
    assert why.startswith(f"{ipaddress.ip_address(address)} is a reserved address (")


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(address) is None


def test_the_reason_names_the_range() -> None:
    assert reserved_because(ipaddress.ip_address("169.254.169.254")) == (
        "169.254.0.0/16, link-local (RFC 3927)"
    )
    assert reserved_because(ipaddress.ip_address("::ffff:192.168.0.1")) == (
        "192.168.0.0/16, private-use (RFC 1918)"
    )


def test_an_allowed_network_is_allowed_and_nothing_else() -> None:
    policy = AddressPolicy.allowing(["127.0.0.1/32", "::1/128"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("127.0.0.2") is not None
    assert policy.refusal("10.0.0.1") is not None


def test_every_range_python_calls_private_is_in_the_table() -> None:
    """The table, not `is_global`, is the rule; it must not miss what Python knows of."""
    table = parse_networks(net for net, _ in RESERVED)
    for address in ["100.64.0.0", "192.0.0.170", "198.18.0.0", "fc00::", "2001:10::", "100::"]:
        ip = ipaddress.ip_address(address)
        assert not ip.is_global
        assert any(ip.version == n.version and ip in n for n in table), address


def test_bad_networks_are_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.1/8' is not a network"):
        parse_networks(["10.0.0.1/8"])
