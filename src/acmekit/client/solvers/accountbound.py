"""Solvers for the challenges bound to the account: dns-account-01 and dns-persist-01.

Both need the account (its URL; for dns-persist-01 its key and the CA's directory), which
a plain `Solver` is not given: the `Client` hands it to any solver that is `AccountAware`
before presenting (`for_account`).

- `DnsAccountSolver` is a `Dns01Solver` publishing at
  `_<label>._acme-challenge.NAME` (draft-ietf-acme-dns-account-label-03), through any
  DnsProvider (RFC 2136, hook, the acmekit DNS API), with the same propagation wait.
- `DnsPersistSolver` (draft-ietf-acme-dns-persist-02) publishes the standing record once
  through a Dns01Solver's provider if it has one, or hands it to `announce` (print it, ask
  to press Enter), and never removes it: the record is meant to stay, so the next order
  and every renewal need no DNS access at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from acmekit.client.persist import PersistRecordText, make_record
from acmekit.client.resources import Challenge
from acmekit.client.solvers.dns01 import Dns01Solver, TxtRecord
from acmekit.client.solvers.dnslookup import (
    Server,
    absolute,
    follow_cname,
    query,
    system_resolver,
    txt_values,
)
from acmekit.protocol import dnsaccount, dnspersist
from acmekit.protocol.jose import PrivateKey, thumbprint
from acmekit.protocol.messages import Identifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountInfo:
    account_url: str
    account_key: PrivateKey
    account_hash_prefix: str | None = None
    issuer_domain_names: tuple[str, ...] = ()


@runtime_checkable
class AccountAware(Protocol):
    def for_account(self, info: AccountInfo) -> None: ...


class DnsAccountSolver(Dns01Solver):
    """dns-01's solver at the account's own label."""

    _account_url: str | None = None

    def for_account(self, info: AccountInfo) -> None:
        self._account_url = info.account_url

    def record_name(self, name: str) -> str:
        if self._account_url is None:
            raise RuntimeError("dns-account-01 needs the account URL (Client.issue gives it)")
        return dnsaccount.record_name(name, self._account_url)


def record_text(
    name: str, info: AccountInfo, *, wildcard: bool = False, issuer: str | None = None
) -> PersistRecordText:
    """The record `name` needs for the account and CA of `info` (the directory's issuer
    names: a record made from them suits every later challenge, draft §3.2)."""
    return make_record(
        name,
        account_url=info.account_url,
        account_key=info.account_key,
        account_hash_prefix=info.account_hash_prefix,
        issuers=info.issuer_domain_names,
        wildcard=wildcard,
        issuer=issuer,
    )


Announce = Callable[[PersistRecordText], Awaitable[None]]


def _without_covered(records: Sequence[PersistRecordText]) -> list[PersistRecordText]:
    """Drop a record whose name also gets a policy=wildcard record of the same issuer."""
    wild = {(r.name, r.issuer) for r in records if r.wildcard}
    return [r for r in records if r.wildcard or (r.name, r.issuer) not in wild]


class DnsPersistSolver:
    """Publish (or announce) the standing `_validation-persist` record; never remove it.

    `issuer`: the issuer domain name to use if the CA offers it (else its first);
    `persist_until`: UNIX seconds for persistUntil; `any_domain`: the `*` form of the
    hashed URI. The identifier a wildcard authorization is presented with starts `*.`.
    """

    def __init__(
        self,
        publisher: Dns01Solver | None = None,
        *,
        announce: Announce | None = None,
        issuer: str | None = None,
        persist_until: int | None = None,
        any_domain: bool = False,
        resolver: Server | None = None,
    ) -> None:
        self.publisher = publisher
        self.resolver = resolver
        self.announce = announce
        self.issuer = issuer
        self.persist_until = persist_until
        self.any_domain = any_domain
        self.records: list[PersistRecordText] = []
        self._info: AccountInfo | None = None
        self._pending: list[PersistRecordText] = []

    def for_account(self, info: AccountInfo) -> None:
        self._info = info

    def record_for(self, identifier: Identifier, challenge: Challenge) -> PersistRecordText:
        if self._info is None:
            raise RuntimeError("dns-persist-01 needs the account (Client.issue gives it)")
        return make_record(
            identifier.value,
            account_url=self._info.account_url,
            account_key=self._info.account_key,
            account_hash_prefix=self._info.account_hash_prefix,
            issuers=challenge.issuer_domain_names or self._info.issuer_domain_names,
            persist_until=self.persist_until,
            issuer=self.issuer,
            any_domain=self.any_domain,
        )

    async def missing(self, names: Sequence[str], info: AccountInfo) -> list[str]:
        """The names (a wildcard as given) with no standing record for this account and
        CA, asked of `resolver` (else the system's) before any order: the CA would
        refuse them (draft §9.4 asks clients to check before ordering)."""
        server = self.resolver or system_resolver()
        accepted_issuers = info.issuer_domain_names
        absent: list[str] = []
        for name in names:
            base = dnspersist.normalize_domain(name.removeprefix("*."))
            owner = await follow_cname(server, absolute(dnspersist.record_name(base)))
            response = await query(server, owner, "TXT")
            uris = [
                dnspersist.hashed_account_uri(
                    info.account_hash_prefix or "",
                    info.account_url,
                    thumbprint(info.account_key),
                    d,
                )
                for d in (base, "*")
            ]
            verdict = dnspersist.evaluate(
                sorted(txt_values(response)),
                issuer_domain_names=accepted_issuers,
                account_uris=uris,
                account_hash_prefix=info.account_hash_prefix or "",
                now=int(time.time()),
                wildcard=name.startswith("*."),
            )
            if verdict.record is None:
                absent.append(name)
        return absent

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        """Collect the record; `wait` publishes (or announces) what the order needs."""
        record = self.record_for(identifier, challenge)
        if all(r != record for r in (*self.records, *self._pending)):
            self._pending.append(record)

    async def wait(self) -> None:
        """Publish or announce the collected records, once each: a name's record with
        policy=wildcard serves its apex too (draft §5), so the apex needs none of its own."""
        pending, self._pending = _without_covered(self._pending), []
        for record in pending:
            self.records.append(record)
            if self.publisher is not None:
                target = absolute(record.name)
                if self.publisher.follow_cname:  # a delegated _validation-persist name
                    target = await follow_cname(self.publisher._server(), target)
                await self.publisher.provider.add_txt(target, record.value)
                self.publisher._unchecked.add(TxtRecord(target, record.value))
                log.info("dns-persist-01 record published at %s", target)
            elif self.announce is not None:
                await self.announce(record)
            else:
                log.info("dns-persist-01 expects %s TXT %r", record.name, record.value)
        if self.publisher is not None and pending:
            await self.publisher.wait()  # the same propagation check as dns-01

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        """Nothing: the record is persistent by design (draft §1)."""


__all__ = [
    "AccountAware",
    "AccountInfo",
    "DnsAccountSolver",
    "DnsPersistSolver",
    "record_text",
]
