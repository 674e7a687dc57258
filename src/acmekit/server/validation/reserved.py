"""Addresses the validation authority never connects to, unless the operator allows them.

A client chooses the names the CA connects to, and what they resolve to, and where their
redirects lead; without this rule it could make the CA open connections inside the CA's
own network (10.0.0.0/8, a cloud's metadata service at 169.254.169.254, fd00::/8, ...),
learn which ports answer, and read the start of what answers in the challenge's error.

`RESERVED` lists the entries of IANA's IPv4 and IPv6 Special-Purpose Address Registries
that are not globally reachable, plus multicast, the IPv4 limited broadcast and
class E, and four that the registries call global but that lead elsewhere:
64:ff9b::/96 and 64:ff9b:1::/48 (NAT64, RFC 6052 / RFC 8215: the translator connects to
the embedded IPv4 address, which may be private), 2002::/16 (6to4, RFC 3056: the same) and
all of 2001::/23 (IETF protocol assignments, refused whole as Let's Encrypt does). The
table is the rule, not `ipaddress.is_global`, whose answer changed between Python versions;
`not is_global` is checked as well, so a range Python knows of and the table misses is
refused too. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as its IPv4 address:
a socket to it is a socket to that address.

`AddressPolicy.allowed` lists networks the operator allows anyway (loopback for tests and
demos): a listed network is allowed even where it is reserved.

IP identifiers in new orders (acmekit.server.names) follow a stricter rule,
`AddressPolicy.identifier_refusal`: the Baseline Requirements' "Reserved IP Address" is
any address in any entry of either IANA registry, globally reachable or not (BR §1.6.1),
and a certificate names none (BR §4.2.2, §7.1.2.7.12). So `IDENTIFIER_RESERVED` adds
the registries' globally reachable entries (AS112, AMT), and an address is judged as
written, never as the IPv4 address inside it: ::ffff:8.8.8.8 is in the registry's
IPv4-mapped entry (::ffff:0:0/96), whatever 8.8.8.8 is; a certificate for it would name
0:0:0:0:0:ffff:808:808, not 8.8.8.8. The operator's allowed networks hold an identifier
only where they contain the address as written.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESERVED: tuple[tuple[str, str], ...] = (
    # IPv4 Special-Purpose Address Registry (RFC 6890 and successors)
    ("0.0.0.0/8", "this network (RFC 791)"),
    ("10.0.0.0/8", "private-use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private-use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
    ("192.88.99.0/24", "6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private-use (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    # IPv6 Special-Purpose Address Registry
    ("::/128", "unspecified address (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    # Not in the registry, but an IPv4 address inside, as NAT64's: automatic tunnels
    # (Linux's sit0 routes ::/96) and SIIT translators carry them on to that address.
    ("::/96", "IPv4-compatible, deprecated (RFC 4291 section 2.5.5.1)"),
    ("::ffff:0:0:0/96", "IPv4-translated, SIIT (RFC 2765)"),
    ("64:ff9b::/96", "IPv4/IPv6 translation, NAT64 (RFC 6052)"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique-local (RFC 4193)"),
    ("fe80::/10", "link-local unicast (RFC 4291)"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)
_TABLE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in RESERVED
)

# The rest of the two registries' entries, for identifiers only: globally reachable, so
# the CA may connect to them, but Reserved IP Addresses all the same (BR §1.6.1). The
# IPv4-mapped entry is here because `RESERVED` judges a mapped address by its IPv4
# address, which is right for a connection and wrong for a certificate's name.
IDENTIFIER_RESERVED: tuple[tuple[str, str], ...] = (
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "automatic multicast tunneling, AMT (RFC 7450)"),
    ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)"),
    ("::ffff:0:0/96", "IPv4-mapped address (RFC 4291)"),
    ("2620:4f:8000::/48", "direct delegation AS112 service (RFC 7534)"),
)
_IDENTIFIER_TABLE: tuple[tuple[IPNetwork, str], ...] = _TABLE + tuple(
    (ipaddress.ip_network(net), why) for net, why in IDENTIFIER_RESERVED
)


def parse_networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR strings (a bare address is its own /32 or /128); ValueError names a bad one."""
    out: list[IPNetwork] = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a network in CIDR notation: {exc}") from None
    return tuple(out)


def reserved_because(address: IPAddress) -> str | None:
    """Why the CA must not connect to `address` ("10.0.0.0/8, private-use (RFC 1918)"),
    or None. An IPv4-mapped address is judged as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return _listed(address, _TABLE)


def special_purpose_because(address: IPAddress) -> str | None:
    """Why `address` is a Reserved IP Address that no certificate may name (BR §1.6.1),
    or None: judged as written, by every entry of both registries."""
    return _listed(address, _IDENTIFIER_TABLE)


def _listed(address: IPAddress, table: tuple[tuple[IPNetwork, str], ...]) -> str | None:
    for network, why in table:
        if address.version == network.version and address in network:
            return f"{network}, {why}"
    if not address.is_global:
        return "not globally reachable"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the CA connects to: public ones, and those in `allowed`."""

    allowed: tuple[IPNetwork, ...] = ()
    # refusal's answers by address: the policy's own, as looking up (allowed, text) in
    # _refusal's cache hashed every network of `allowed` in Python on each call
    _known: dict[str, str | None] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def allowing(cls, cidrs: Iterable[str]) -> AddressPolicy:
        return cls(parse_networks(cidrs))

    def refusal(self, text: str) -> str | None:
        """Why the CA must not connect to the address `text`, or None when it may."""
        try:
            return self._known[text]
        except KeyError:
            pass
        why = _refusal(self.allowed, text)  # raises ValueError for a bad address
        if len(self._known) >= _KNOWN:
            self._known.clear()
        self._known[text] = why
        return why

    def identifier_refusal(self, text: str) -> str | None:
        """Why the CA must not issue for the IP address `text`, or None when it may:
        a Reserved IP Address as written (`special_purpose_because`), unless an allowed
        network holds it as written. ValueError for a bad address."""
        address = ipaddress.ip_address(text)
        if any(address.version == n.version and address in n for n in self.allowed):
            return None
        why = special_purpose_because(address)
        return None if why is None else f"{address} is a reserved address ({why})"


_KNOWN = 4096  # addresses whose answer a policy remembers


@functools.lru_cache(maxsize=4096)
def _refusal(allowed: tuple[IPNetwork, ...], text: str) -> str | None:
    """`AddressPolicy.refusal`, remembered: a pure function of the policy and the address,
    which cost 10-40 µs of CPU per call (parsing, then the table and `is_global`), twice per
    connection (the address resolved, then the socket's peer). A bad address is not
    remembered: ValueError is raised each time."""
    address = ipaddress.ip_address(text)
    plain = address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        plain = address.ipv4_mapped
    if any(plain.version == n.version and plain in n for n in allowed):
        return None
    why = reserved_because(address)
    return None if why is None else f"{address} is a reserved address ({why})"
