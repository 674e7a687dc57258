"""Registered domains: what rate limits count, shared by the CA and the fleet; the
label rules (IDNA 2008 A-labels, reserved `??--` labels) both refuse a name for; and the
checks of a DNS name an operator gives.

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

import idna
from publicsuffixlist import PublicSuffixList

from acmekit.protocol.messages import parse_dns_name
from acmekit.protocol.problems import AcmeError

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


def bad_alabel(name: str) -> str | None:
    """The first `xn--` label of `name` that is not a valid IDNA 2008 A-label, if any."""
    for label in name.lower().split("."):
        if not label.startswith("xn--"):
            continue
        try:
            if idna.alabel(idna.ulabel(label)).decode("ascii") != label:
                return label
        except (idna.IDNAError, UnicodeError):
            return label
    return None


def reserved_ldh_label(name: str) -> str | None:
    """The first label of `name` in the reserved `??--` form that is no A-label, if any."""
    for label in name.lower().split("."):
        if label[2:4] == "--" and not label.startswith("xn--"):
            return label
    return None


def operator_name(
    where: str, value: str, *, single_label: bool = False, wildcard: bool = False
) -> str:
    """A DNS name an operator gives (a config value, a flag), lower-cased after the
    checks a dns identifier gets (`parse_dns_name`, and the A-label rules of
    `server.names.NamePolicy`), one absolute name's final dot dropped; ValueError in one
    line naming `where` and the value otherwise. Lower-cased unchecked, a name with the
    Kelvin sign (U+212A) stood for another ("k"), and a U-label or a broken `xn--` label
    for none the CA would ever see (RFC 5890 §2.3.2.1: an IDN is written in A-labels).
    `single_label`: a name of one label too (`test`, a CAA identity `acmekit`);
    `wildcard`: a leading `*.` too."""
    if not value.isascii():
        raise ValueError(f"{where}: {value!r} is not ASCII (write an IDN in its xn-- form)")
    name = value.removesuffix(".")
    if name.startswith("*") and not wildcard:
        raise ValueError(f"{where}: {value!r}: a wildcard is not allowed here")
    try:
        name = parse_dns_name(name, 1 if single_label else 2)
    except AcmeError as exc:
        raise ValueError(f"{where}: {exc.problem.detail}") from None
    label = bad_alabel(name)
    if label is not None:
        raise ValueError(f"{where}: {value!r}: label {label!r} is not a valid IDNA 2008 A-label")
    label = reserved_ldh_label(name)
    if label is not None:
        raise ValueError(
            f"{where}: {value!r}: label {label!r} is in a reserved form (RFC 5891 §4.2.3.1)"
        )
    return name
