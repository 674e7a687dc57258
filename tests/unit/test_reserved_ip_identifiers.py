"""IP identifiers the CA never issues for: every Reserved IP Address of the Baseline
Requirements (BR §1.6.1: any address in IANA's IPv4 and IPv6 Special-Purpose Address
Registries, globally reachable or not), each judged as written. The rule for where the
CA may connect stays the looser one (acmekit.server.validation.reserved)."""

from __future__ import annotations

import pytest

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.names import NamePolicy
from acmekit.server.validation.reserved import AddressPolicy

LOOPBACK = AddressPolicy.allowing(["127.0.0.0/8", "::1/128"])

# (address, the registry entry the refusal names)
SPECIAL_PURPOSE = [
    ("::ffff:8.8.8.8", "::ffff:0:0/96"),  # IPv4-mapped (RFC 4291): not 8.8.8.8
    ("::ffff:127.0.0.1", "::ffff:0:0/96"),
    ("64:ff9b::808:808", "64:ff9b::/96"),  # NAT64 (RFC 6052), globally reachable
    ("2002:808:808::1", "2002::/16"),  # 6to4 (RFC 3056)
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/23"),  # Teredo, 2001::/32 (RFC 4380)
    ("2001:1::1", "2001::/23"),  # PCP anycast (RFC 7723), globally reachable
    ("2001:4:112::1", "2001::/23"),  # AS112-v6 (RFC 7535), globally reachable
    ("2620:4f:8000::1", "2620:4f:8000::/48"),  # AS112 direct delegation (RFC 7534)
    ("100:0:0:1::1", "100:0:0:1::/64"),  # dummy prefix (RFC 9780)
    ("192.0.0.9", "192.0.0.0/24"),  # PCP anycast (RFC 7723), globally reachable
    ("192.31.196.1", "192.31.196.0/24"),  # AS112-v4 (RFC 7535)
    ("192.52.193.1", "192.52.193.0/24"),  # AMT (RFC 7450)
    ("192.175.48.1", "192.175.48.0/24"),  # AS112 direct delegation (RFC 7534)
]


@pytest.mark.parametrize(("address", "entry"), SPECIAL_PURPOSE)
def test_every_special_purpose_address_is_a_rejected_identifier(address: str, entry: str) -> None:
    ident = Identifier(IdentifierType.IP, address)
    with pytest.raises(AcmeError) as info:
        NamePolicy((), LOOPBACK).check([ident])
    problem = info.value.problem
    assert problem.type == ProblemType.REJECTED_IDENTIFIER
    assert f"is a reserved address ({entry}, " in problem.detail


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "127.0.0.1", "::1"])
def test_public_and_allowed_addresses_pass(address: str) -> None:
    NamePolicy((), LOOPBACK).check([Identifier(IdentifierType.IP, address)])


def test_a_mapped_address_is_still_connected_to_as_its_ipv4_address() -> None:
    """Where to connect is judged by the IPv4 address inside: a socket to
    ::ffff:8.8.8.8 is one to 8.8.8.8, and AS112's anycast is a public service."""
    assert LOOPBACK.refusal("::ffff:8.8.8.8") is None
    assert LOOPBACK.refusal("::ffff:127.0.0.1") is None
    assert LOOPBACK.refusal("192.31.196.1") is None
    assert LOOPBACK.refusal("::ffff:10.0.0.1") is not None
