"""Validations bound to the account: dns-account-01 and dns-persist-01.

Both need more than a key authorization: the account URL (dns-account-01's label,
draft-ietf-acme-dns-account-label-03 §3) and, for dns-persist-01
(draft-ietf-acme-dns-persist-02 §4.2), the account's key thumbprints, the CA's issuer
domain names and hash prefix, whether the authorization is a wildcard, and the time. The
`AccountContext` carries them; each validator is a plain coroutine over the shared
`DnsClient`, so the lookups follow CNAMEs with the same bound as dns-01 (`resolve.py`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dns.rdatatype

from acmekit.domains import registered_domain
from acmekit.protocol import dnsaccount, dnspersist
from acmekit.protocol.messages import Identifier
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.validation.dns01 import check_txt
from acmekit.server.validation.resolve import DnsClient, Lookup, dns_problem


@dataclass(frozen=True)
class AccountContext:
    """What an account-bound validation knows of the account and the CA.

    `thumbprints`: the account's key thumbprints, the current first (§4.2 asks the CA to
    try it first). `now`: UNIX seconds, for persistUntil.
    """

    account_url: str
    thumbprints: tuple[str, ...]
    issuer_domain_names: tuple[str, ...]
    account_hash_prefix: str
    wildcard: bool
    now: int


async def _txt(dns_client: DnsClient, name: str, deadline: float) -> Lookup:
    try:
        async with asyncio.timeout_at(deadline):
            return await dns_client.query(name, dns.rdatatype.TXT)
    except TimeoutError:
        raise dns_problem(f"query timed out looking up TXT for {name}") from None


async def validate_dns_account01(
    dns_client: DnsClient,
    identifier: Identifier,
    key_authorization: str,
    account: AccountContext,
    deadline: float,
) -> None:
    """dns-01's check at the account's own name (draft §4)."""
    name = dnsaccount.record_name(identifier.base_name, account.account_url)
    found = await _txt(dns_client, name, deadline)
    check_txt(name, found.values, dnsaccount.txt_value(key_authorization))


def accepted_account_uris(fqdn: str, account: AccountContext) -> tuple[str, ...]:
    """§4.2: the hashed URI over each retained key, for the record's FQDN and for `*`."""
    return tuple(
        dnspersist.hashed_account_uri(account.account_hash_prefix, account.account_url, t, d)
        for t in account.thumbprints
        for d in (fqdn, "*")
    )


async def validate_dns_persist01(
    dns_client: DnsClient,
    identifier: Identifier,
    account: AccountContext,
    deadline: float,
) -> int | None:
    """§4.2: a record at `_validation-persist.NAME` that names this CA and this account;
    returns its persistUntil (the authorization may not outlive it, §4.1 item 5).

    Failing that, §6: a record with policy=wildcard at a parent of NAME (up to its
    registered domain) covers NAME too; its hashed URI is made with the parent's name."""
    base = dnspersist.normalize_domain(identifier.base_name)
    try:
        return await _persist_at(dns_client, base, account, account.wildcard, deadline)
    except AcmeError as own:
        for parent in _parents(base):
            try:
                return await _persist_at(dns_client, parent, account, True, deadline)
            except AcmeError:
                continue
        raise own from None


async def _persist_at(
    dns_client: DnsClient, fqdn: str, account: AccountContext, wildcard: bool, deadline: float
) -> int | None:
    name = dnspersist.record_name(fqdn)
    found = await _txt(dns_client, name, deadline)
    verdict = dnspersist.evaluate(
        found.values,
        issuer_domain_names=account.issuer_domain_names,
        account_uris=accepted_account_uris(fqdn, account),
        account_hash_prefix=account.account_hash_prefix,
        now=account.now,
        wildcard=wildcard,
    )
    if verdict.record is not None:
        return verdict.record.persist_until
    # §9.3.1: malformed for syntax, unauthorized for another account, another CA, an
    # expired persistUntil or a missing wildcard policy.
    ptype = ProblemType.MALFORMED if verdict.malformed_only else ProblemType.UNAUTHORIZED
    raise problem(ptype, verdict.explain(name))


def _parents(fqdn: str) -> list[str]:
    """The proper suffixes of `fqdn` down to its registered domain (never a public
    suffix: a record there could not be the domain owner's)."""
    top = registered_domain(fqdn)
    labels = fqdn.split(".")
    out = []
    for i in range(1, len(labels)):
        parent = ".".join(labels[i:])
        if len(parent) < len(top):
            break
        out.append(parent)
    return out


__all__ = [
    "AccountContext",
    "accepted_account_uris",
    "validate_dns_account01",
    "validate_dns_persist01",
]
