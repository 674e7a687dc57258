"""`HOST:PORT` as every command and setting of acmekit writes it, parsed one way.

`[V6]:PORT` brackets an IPv6 address; a port must be 0-65535 (0: the system chooses).
A bad value is a ValueError whose message names it, which the command line turns into
one line. `client_of`: the client a peer address counts as, for bounds per client.
"""

from __future__ import annotations

import ipaddress


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split `text` into (host, port); `default_port` allows a bare HOST."""
    text = text.strip()
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if close else ""
        if not close or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPV6]:PORT, got {text!r}")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" not in text:
        host, port_text = text, ""
    else:
        raise ValueError(f"expected HOST:PORT (an IPv6 address in brackets), got {text!r}")
    if not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}: the host is missing")
    if not port_text:
        if default_port is None:
            raise ValueError(f"expected HOST:PORT, got {text!r}: the port is missing")
        return host, default_port
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}: {port_text!r} is not a port")
    return host, int(port_text)


def client_of(peer: object) -> str:
    """The client a peer address counts as: an IPv6 address by its /64, the least one
    subscriber is given (RFC 6177), or one client would hold 2^64 shares; an IPv4
    address (also as `::ffff:a.b.c.d`) as it is."""
    if not isinstance(peer, tuple):
        return ""
    text = str(peer[0]).split("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return text
