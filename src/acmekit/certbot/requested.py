"""The names a user asks for with `-d` and `--ip-address`, checked as certbot checks them
before anything is sent (certbot's `enforce_domain_sanity`): a name no CA would take is
said at once, not as a CA's refusal after an account was made for it.

The rules are certbot's, not a CA's policy: the CA judges the rest (rejectedIdentifier).
"""

from __future__ import annotations

import ipaddress

from acmekit.protocol.messages import looks_like_ip

MAX_NAME = 255  # octets, RFC 2181 §11 (certbot's bound)
MAX_LABEL = 63


class BadName(ValueError):
    """A requested name certbot would refuse, with its reason."""


def requested_domain(text: str) -> str:
    """A `-d` name: lower-cased, without a trailing dot (certbot's normal form)."""
    if not text.isascii():
        raise BadName(
            f"{text}: non-ASCII domain names are not supported; "
            "for an internationalized domain name, use its Punycode (xn--) form"
        )
    name = text.lower().removesuffix(".")
    for scheme in ("http://", "https://"):
        if name.startswith(scheme):
            raise BadName(f"{name} is a URL, not a domain name; give it without {scheme!r}")
    if looks_like_ip(name):
        raise BadName(f"{name} is an IP address; give it with --ip-address")
    if len(name) > MAX_NAME:
        raise BadName(f"{name[:40]}... is longer than {MAX_NAME} octets")
    for label in name.split("."):
        if not label:
            raise BadName(f"{name} has an empty label")
        if len(label) > MAX_LABEL:
            raise BadName(f"{name} has a label longer than {MAX_LABEL} octets")
    return name


def requested_address(text: str) -> str:
    """An `--ip-address` value (RFC 8738), in its one canonical spelling."""
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        raise BadName(f"{text} is not an IP address") from None
