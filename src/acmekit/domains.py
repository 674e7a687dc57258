"""Registered domains: what rate limits count, shared by the CA and the fleet.

A registered domain is a name's eTLD+1 by the Public Suffix List (the copy bundled with
`publicsuffixlist`, so nothing is fetched), as Let's Encrypt counts certificates per
registered domain. A wildcard counts for its base name. An IP address (RFC 8738) has no
public suffix: it is its own registered domain, written in its canonical form so that
two spellings of one address count together. A bare public suffix counts for itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

_PSL: Callable[[], PublicSuffixList] = lru_cache(maxsize=1)(PublicSuffixList)


def load_public_suffixes() -> None:
    """Read the Public Suffix List now (about 0.3 s of CPU), not at the first request
    that needs a registered domain."""
    _PSL()


# The answer depends on the name alone (the list is read once a process), and the CA asks
# for one name's several times a certificate (newOrder's limits, finalize's takes, a
# failed validation's bucket): each lookup tries the name as an IP address first (two
# exceptions for a DNS name) and walks the list. Bounded: a fleet holds millions of names.
@lru_cache(maxsize=8192)
def registered_domain(name: str) -> str:
    """The registered domain of a DNS name, wildcard or IP address."""
    name = name.lower().rstrip(".").removeprefix("*.")
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    found = _PSL().privatesuffix(name)
    return str(found) if found else name


def registered_domains(names: Iterable[str]) -> tuple[str, ...]:
    """The distinct registered domains of `names`, sorted."""
    return tuple(sorted({registered_domain(n) for n in names}))
