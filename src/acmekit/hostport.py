"""`HOST:PORT` as every command and setting of acmekit writes it, parsed one way.

`[V6]:PORT` brackets an IPv6 address; a port must be 0-65535 (0: the system chooses).
A bad value is a ValueError whose message names it, which the command line turns into
one line.
"""

from __future__ import annotations


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
