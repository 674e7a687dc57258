"""dns-01 (RFC 8555 §8.4) through a DnsProvider, with CNAME delegation and a propagation wait.

`present` computes the TXT value (base64url SHA-256 of the key authorization) and the
record name `_acme-challenge.NAME` (a wildcard is validated at its base name, so a name
and its wildcard publish two values at one name). With `follow_cname` the CNAME chain at
that name is followed first (through `resolver`), and the record is published where the
chain ends: the delegation that acme-dns popularized, where `_acme-challenge.example.com`
points into a zone the provider may update. The provider is then asked to add the record.

`wait`, awaited once after every challenge is presented, polls until each record is
visible, so that propagation overlaps across names. The rule:

1. The record's zone is found by SOA queries through `resolver`, walking up the labels
   (RFC 1034 §4.3.2, RFC 2308 §3); its NS hosts and their addresses likewise.
2. Each NS address is asked directly, over TCP on port 53 (`nameserver_port`), without
   recursion. The record is visible when every NS that answers authoritatively (AA set,
   NOERROR or NXDOMAIN) has the value; one that refuses or is not authoritative is lame
   and skipped, like one that cannot be reached.
3. If no NS address answers at all (nothing listens there: as in tests, where the whole
   DNS is one server on a loopback port), the record is looked up through `resolver`.

Polling uses the injected clock's `sleep` every `propagation_interval` seconds and gives
up after `propagation_timeout` seconds with a PropagationError naming the records not
seen. Without `resolver`, the system's first configured nameserver is used.

`cleanup` asks the provider to remove the record. Records are reference-counted by
(name, value), so two orders sharing an authorization publish and remove it once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.rcode

from acmekit.client.resources import Challenge
from acmekit.client.solvers.dnslookup import (
    DNS_PORT,
    Server,
    absolute,
    find_zone,
    follow_cname,
    nameserver_addresses,
    query,
    system_resolver,
    txt_values,
)
from acmekit.client.solvers.errors import PropagationError, SolverError
from acmekit.client.solvers.presented import Presented
from acmekit.clock import Clock, SystemClock
from acmekit.protocol.challenges import dns01_record_name, dns01_txt_value
from acmekit.protocol.messages import Identifier

log = logging.getLogger(__name__)


class DnsProvider(Protocol):
    """Publishes TXT records. `fqdn` is absolute, with the trailing dot
    (`_acme-challenge.example.com.`); a name may hold several values at once."""

    async def add_txt(self, fqdn: str, value: str) -> None: ...

    async def remove_txt(self, fqdn: str, value: str) -> None: ...


@dataclass(frozen=True)
class TxtRecord:
    fqdn: str  # where the value is published (the end of the CNAME chain)
    value: str


@dataclass
class _Authorities:
    """What one `wait` learned: each zone's NS addresses, and addresses that failed."""

    zones: dict[str, str] = field(default_factory=dict)  # fqdn -> zone
    addresses: dict[str, list[str]] = field(default_factory=dict)  # zone -> NS addresses
    unreachable: set[str] = field(default_factory=set)


class Dns01Solver:
    def __init__(
        self,
        provider: DnsProvider,
        *,
        resolver: tuple[str, int] | None = None,
        propagation_timeout: float = 120.0,
        propagation_interval: float = 2.0,
        follow_cname: bool = True,
        clock: Clock | None = None,
        nameserver_port: int = DNS_PORT,
    ) -> None:
        self.provider = provider
        self.resolver = resolver
        self.propagation_timeout = propagation_timeout
        self.propagation_interval = propagation_interval
        self.follow_cname = follow_cname
        self.clock = clock or SystemClock()
        self.nameserver_port = nameserver_port
        self._published: Presented[tuple[str, str], TxtRecord] = Presented()
        self._unchecked: set[TxtRecord] = set()

    def _server(self) -> Server:
        return self.resolver or system_resolver()

    def record_name(self, name: str) -> str:
        """The TXT owner for `name` (dns-account-01's solver names it otherwise)."""
        return dns01_record_name(name)

    async def target(self, identifier: Identifier) -> str:
        """Where the TXT record for `identifier` is published (absolute name)."""
        name = absolute(self.record_name(identifier.value))
        if not self.follow_cname:
            return name
        server = self._server()
        try:
            return await follow_cname(server, name)
        except (OSError, dns.exception.DNSException) as exc:
            # The resolver is the one the user named (--dns-resolver) or the system's:
            # say which, not only dnspython's "The DNS operation timed out".
            host, port = server
            raise SolverError(
                f"cannot look up CNAME {name} at the resolver {host}:{port}: {exc}"
            ) from exc

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        value = dns01_txt_value(key_authorization)
        key = (absolute(self.record_name(identifier.value)), value)
        existing = self._published.get(key)
        if existing is not None:
            self._published.add(key, existing)
            return
        record = TxtRecord(await self.target(identifier), value)
        await self.provider.add_txt(record.fqdn, value)
        self._published.add(key, record)
        self._unchecked.add(record)
        log.info("dns-01 TXT for %s published at %s", identifier.value, record.fqdn)

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        key = (absolute(self.record_name(identifier.value)), dns01_txt_value(key_authorization))
        record = self._published.release(key)
        if record is None:
            return
        self._unchecked.discard(record)
        await self.provider.remove_txt(record.fqdn, record.value)

    async def wait(self) -> None:
        """Until every presented record is visible, or PropagationError."""
        pending = set(self._unchecked)
        seen = _Authorities()
        deadline = self.clock.now() + timedelta(seconds=self.propagation_timeout)
        while pending:
            results = await asyncio.gather(*(self.visible(r, seen) for r in pending))
            done = {r for r, ok in zip(pending, results, strict=True) if ok}
            self._unchecked -= done
            pending -= done
            if not pending:
                break
            if self.clock.now() >= deadline:
                missing = sorted({r.fqdn for r in pending})
                raise PropagationError(missing, self.propagation_timeout)
            await self.clock.sleep(self.propagation_interval)
        log.info("dns-01 records visible")

    async def visible(self, record: TxtRecord, seen: _Authorities | None = None) -> bool:
        """Whether the zone's authoritative servers (or else the resolver) serve it."""
        seen = seen or _Authorities()
        try:
            verdict = await self._on_authorities(record, seen)
            if verdict is None:
                verdict = record.value in txt_values(
                    await query(self._server(), record.fqdn, "TXT")
                )
        except (OSError, dns.exception.DNSException) as exc:
            log.debug("looking for %s: %s", record.fqdn, exc)
            return False
        return verdict

    async def _on_authorities(self, record: TxtRecord, seen: _Authorities) -> bool | None:
        """True/False as the NS servers that answer say; None if none answers."""
        answered = False
        for address in await self._addresses(record.fqdn, seen):
            if address in seen.unreachable:
                continue
            try:
                response = await query(
                    (address, self.nameserver_port), record.fqdn, "TXT", tcp=True, recursion=False
                )
            except (OSError, dns.exception.DNSException):
                seen.unreachable.add(address)
                continue
            if not _authoritative(response):
                seen.unreachable.add(address)  # lame: it does not serve the zone
                continue
            answered = True
            if record.value not in txt_values(response):
                return False
        return True if answered else None

    async def _addresses(self, fqdn: str, seen: _Authorities) -> list[str]:
        if fqdn not in seen.zones:
            seen.zones[fqdn] = await find_zone(self._server(), fqdn)
        zone = seen.zones[fqdn]
        if zone not in seen.addresses:
            seen.addresses[zone] = await nameserver_addresses(self._server(), zone)
        return seen.addresses[zone]


def _authoritative(response: dns.message.Message) -> bool:
    rcode = response.rcode()
    return bool(response.flags & dns.flags.AA) and rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
