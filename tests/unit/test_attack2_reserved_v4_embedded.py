"""IPv6 addresses that carry an IPv4 address inside, as NAT64's do, are refused as
NAT64's are: an IPv4-compatible address (::a.b.c.d, deprecated by RFC 4291 §2.5.5.1,
still routed by Linux's automatic tunnel sit0) and an IPv4-translated one
(::ffff:0:a.b.c.d, RFC 2765's SIIT) lead to the IPv4 address, which may be the CA's own
network. Python's `ipaddress` calls both globally reachable."""

from __future__ import annotations

import pytest

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError
from acmekit.server.names import NamePolicy
from acmekit.server.validation.reserved import AddressPolicy


@pytest.mark.parametrize(
    "address",
    ["::7f00:1", "::a9fe:a9fe", "::a00:1", "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe"],
)
def test_ipv4_inside_ipv6_is_refused(address: str) -> None:
    why = AddressPolicy().refusal(address)
    assert why is not None and "reserved" in why, why


def test_an_ip_identifier_with_ipv4_inside_is_refused_at_new_order() -> None:
    with pytest.raises(AcmeError) as exc:
        NamePolicy((), AddressPolicy()).check([Identifier(IdentifierType.IP, "::a9fe:a9fe")])
    assert "rejectedIdentifier" in str(exc.value.problem.type)


def test_public_ipv6_is_still_allowed() -> None:
    assert AddressPolicy().refusal("2606:4700:4700::1111") is None
