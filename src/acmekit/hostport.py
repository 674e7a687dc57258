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
    # ASCII first: str.isdigit takes '²' (int() then raises) and '٨٠' (int() reads 80).
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}: {port_text!r} is not a port")
    return host, int(port_text)


def client_key(address: str) -> str:
    """The client an address counts as, for connection caps and rate limits alike: an
    IPv4 address as it is (also when a dual-stack listener shows it as `::ffff:a.b.c.d`),
    an IPv6 one by its /64, the least a subscriber is given (RFC 6177), or one client
    would hold 2^64 shares. Anything else (a unix socket's name) as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_of(peer: object) -> str:
    """`client_key` of a transport's peername ("" when there is none)."""
    return client_key(str(peer[0])) if isinstance(peer, tuple) else ""
