"""Identifiers the CA refuses to issue for, whoever proves control of them.

RFC 8555 §7.1.3 leaves it to the CA which identifiers it accepts (`rejectedIdentifier`);
`protocol.messages.parse_identifier` checks only their syntax. These rules come on top,
as the CA/Browser Forum's baseline requirements and Let's Encrypt's policy have them:

- A public suffix (the ICANN section of the Public Suffix List: `co.uk`, `com`), as a name
  or as a wildcard's base: no one controls every name under it. The private section
  (`github.io`) is left to its owners, who may want a certificate for it.
- Special-use domain names (RFC 6761 and IANA's registry: `localhost`, `test`, `local`,
  `onion`, `home.arpa`, ...) and every name under one: they mean nothing, or something
  local, on the public internet. `allowed_special_names` lets a test or demo CA issue for
  some (the demo's `.test`).
- An `xn--` label (an A-label) that is not valid IDNA 2008 (RFC 5891): it must decode to a
  U-label that encodes back to the same A-label.
- A label with `--` in its third and fourth characters that is not an A-label: RFC 5891
  §4.2.3.1 reserves those (R-LDH) for encodings yet to come, and the Baseline
  Requirements' lint refuses them, which would fail the order only at finalize.
- An IP identifier (RFC 8738) at a Reserved IP Address (BR §1.6.1: any address in IANA's
  IPv4 and IPv6 Special-Purpose Address Registries), unless the operator allows its
  network: `validation.reserved`'s rule for the addresses the CA connects to, and the
  registries' globally reachable entries, each address judged as written (an
  IPv4-mapped ::ffff:8.8.8.8 is refused, not judged as 8.8.8.8).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from publicsuffixlist import PublicSuffixList

from acmekit.protocol.dnslabels import bad_alabel as bad_alabel
from acmekit.protocol.dnslabels import reserved_ldh_label as reserved_ldh_label
from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.validation.reserved import AddressPolicy

# IANA's Special-Use Domain Names registry (RFC 6761 §6 and later RFCs), plus `internal`
# (ICANN's reservation for private use, 2024). Every name under `arpa` is refused: the
# reverse zones of reserved ranges (RFC 6761 §6.1), home.arpa, and no name a web site uses.
SPECIAL_USE: dict[str, str] = {
    "localhost": "RFC 6761",
    "invalid": "RFC 6761",
    "test": "RFC 6761",
    "example": "RFC 6761",
    "example.com": "RFC 6761",
    "example.net": "RFC 6761",
    "example.org": "RFC 6761",
    "local": "RFC 6762",
    "onion": "RFC 7686",
    "alt": "RFC 9476",
    "internal": "ICANN, private use",
    "arpa": "RFC 3172, infrastructure (home.arpa: RFC 8375)",
}


@cache
def _icann_suffixes() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True)


def load_public_suffixes() -> None:
    """Read the list now (about 0.3 s of CPU, once per process), at start-up rather
    than inside the first newOrder."""
    _icann_suffixes()


def _rejected(ident: Identifier, why: str) -> AcmeError:
    return problem(
        ProblemType.REJECTED_IDENTIFIER, f"{ident.value!r}: {why}", identifier=ident.to_json()
    )


def special_use(name: str, allowed: Iterable[str] = ()) -> str | None:
    """The special-use name `name` is, or is under, that `allowed` does not cover."""
    labels = name.lower().split(".")
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        if suffix in allowed:
            return None
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        if suffix in SPECIAL_USE:
            return suffix
    return None


class NamePolicy:
    """The rules above, with the operator's exceptions."""

    def __init__(self, allowed_special_names: Iterable[str], reachable: AddressPolicy) -> None:
        self._allowed = frozenset(n.strip(".").lower() for n in allowed_special_names)
        self._reachable = reachable

    def check(self, identifiers: Sequence[Identifier]) -> None:
        """Raise rejectedIdentifier for the first identifier the CA does not issue for."""
        for ident in identifiers:
            if ident.type == IdentifierType.IP:
                self._check_ip(ident)
            else:
                self._check_dns(ident)

    def _check_ip(self, ident: Identifier) -> None:
        why = self._reachable.identifier_refusal(ident.value)
        if why is not None:
            raise _rejected(ident, why)

    def _check_dns(self, ident: Identifier) -> None:
        base = ident.base_name
        if _icann_suffixes().is_public(base):
            what = "a wildcard on the public suffix" if ident.is_wildcard else "a public suffix"
            raise _rejected(ident, f"{what} {base!r} (Public Suffix List, ICANN section)")
        special = special_use(base, self._allowed)
        if special is not None:
            reason = SPECIAL_USE[special]
            raise _rejected(ident, f"{special!r} is a special-use domain name ({reason})")
        label = bad_alabel(base)
        if label is not None:
            raise _rejected(ident, f"label {label!r} is not a valid IDNA 2008 A-label")
        label = reserved_ldh_label(base)
        if label is not None:
            raise _rejected(ident, f"label {label!r} is in a reserved form (RFC 5891 §4.2.3.1)")
