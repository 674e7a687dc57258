"""The records a client publishes for dns-persist-01 (draft-ietf-acme-dns-persist-02).

A record names the CA (one of its issuer domain names) and the account, by a hashed URI
made from the account URL and key thumbprint under the CA's `accountHashPrefix` (§4.1).
Everything needed is in the directory and the account, so a record can be made, and
published once, before any order (§4.5): `Client.persist_record` and `acmekit
persist-record` do that; `DnsPersistSolver` (solvers/accountbound.py) does it for an
order's challenge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from acmekit.protocol import dnspersist
from acmekit.protocol.jose import PrivateKey, thumbprint


class PersistUnavailable(Exception):
    """The CA does not say what dns-persist-01 needs (no issuer names or hash prefix), or
    says it in a form the client will not publish."""


@dataclass(frozen=True)
class PersistRecordText:
    """One TXT record to publish: owner name (no trailing dot) and value."""

    name: str
    value: str
    issuer: str
    wildcard: bool = False  # policy=wildcard: serves the name, its subdomains, wildcards

    def zone_line(self, ttl: int = 3600) -> str:
        """The record as a zone-file line, its value split into 255-octet strings."""
        strings = " ".join(f'"{s}"' for s in dnspersist.txt_strings(self.value))
        return f"{self.name}. {ttl} IN TXT {strings}"


def choose_issuer(offered: Sequence[str], wanted: str | None = None) -> str:
    """`wanted` if the CA offers it, else the CA's first name (§3.1: 1 to 10 names).

    The CA's names go into the record as they are, so each must be a DNS name as §3.1
    has it (lowercase LDH labels, no trailing dot): from a CA that sends `ca.test;
    policy=wildcard` or a name with spaces or control characters, the client would
    publish parameters of the CA's making. Such a CA is refused, not repaired."""
    try:
        names = list(dnspersist.check_issuer_domain_names(offered))
    except ValueError as exc:
        raise PersistUnavailable(str(exc)) from None
    if wanted is None:
        return names[0]
    if dnspersist.normalize_domain(wanted) not in names:
        raise PersistUnavailable(f"the CA does not offer issuer {wanted!r} ({', '.join(names)})")
    return dnspersist.normalize_domain(wanted)


def make_record(
    domain: str,
    *,
    account_url: str,
    account_key: PrivateKey,
    account_hash_prefix: str | None,
    issuers: Sequence[str],
    wildcard: bool = False,
    persist_until: int | None = None,
    issuer: str | None = None,
    any_domain: bool = False,
) -> PersistRecordText:
    """The record for `domain` (a wildcard: its base name, with policy=wildcard).

    `any_domain` makes the hashed URI with `*` instead of the domain (§4.1: one value
    valid for every domain of the account, at the cost of correlating them, §7.2.3)."""
    if not account_hash_prefix:
        raise PersistUnavailable("the CA's directory has no accountHashPrefix")
    base = dnspersist.normalize_domain(domain.removeprefix("*."))
    wildcard = wildcard or domain.startswith("*.")
    uri = dnspersist.hashed_account_uri(
        account_hash_prefix, account_url, thumbprint(account_key), "*" if any_domain else base
    )
    chosen = choose_issuer(issuers, issuer)
    value = dnspersist.render_record(chosen, uri, wildcard, persist_until)
    return PersistRecordText(dnspersist.record_name(base), value, chosen, wildcard)


__all__ = ["PersistRecordText", "PersistUnavailable", "choose_issuer", "make_record"]
