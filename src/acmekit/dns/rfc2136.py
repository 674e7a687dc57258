"""Publishing dns-01 TXT records with RFC 2136 UPDATE, signed with TSIG (RFC 8945).

What a dns-01 solver calls to put `_acme-challenge` values on any server that accepts
dynamic updates (ours, BIND, Knot, PowerDNS). Like certbot's dns-rfc2136 plugin it finds
the zone by asking the server for the SOA of the name and then of each parent, signed with
the key, and takes the first authoritative answer (RFC 2136 §4 needs the zone in the
message). Updates go over TCP (RFC 7766); an RCODE other than NOERROR, or a reply whose
TSIG does not verify, raises a `dns` problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

from acmekit.dns.store import RecordType, make_rdata, parse_name
from acmekit.protocol.problems import AcmeError, ProblemType, problem

log = logging.getLogger(__name__)

TIMEOUT = 10.0


def _dns_problem(detail: str) -> AcmeError:
    return problem(ProblemType.DNS, detail)


@dataclass(frozen=True)
class Rfc2136Updater:
    """Where to send updates and the TSIG key to sign them with."""

    server: str
    port: int = 53
    key: dns.tsig.Key | None = None
    timeout: float = TIMEOUT

    async def _exchange(self, message: dns.message.Message) -> dns.message.Message:
        if self.key is not None:
            message.use_tsig(self.key)
        try:
            return await dns.asyncquery.tcp(
                message, self.server, port=self.port, timeout=self.timeout
            )
        except (OSError, dns.exception.DNSException) as exc:
            raise _dns_problem(f"DNS server {self.server}:{self.port}: {exc}") from None

    async def find_zone(self, name: str | dns.name.Name) -> dns.name.Name:
        """The closest enclosing zone the server answers SOA for, authoritatively."""
        candidate = parse_name(name)
        while len(candidate) > 1:
            query = dns.message.make_query(candidate, dns.rdatatype.SOA)
            query.flags &= ~dns.flags.RD
            reply = await self._exchange(query)
            soa = reply.get_rrset(reply.answer, candidate, dns.rdataclass.IN, dns.rdatatype.SOA)
            if reply.rcode() == dns.rcode.NOERROR and soa and reply.flags & dns.flags.AA:
                return candidate
            candidate = candidate.parent()
        raise _dns_problem(f"no zone found for {name}")

    async def _update(self, name: str, value: str, ttl: int, *, add: bool) -> None:
        owner = parse_name(name)
        zone = await self.find_zone(owner)
        update = dns.update.UpdateMessage(zone)
        rdata = make_rdata(RecordType.TXT, value)
        if add:
            update.add(owner, ttl, rdata)
        else:
            update.delete(owner, rdata)
        reply = await self._exchange(update)
        if reply.rcode() != dns.rcode.NOERROR:
            rcode = dns.rcode.to_text(reply.rcode())
            raise _dns_problem(f"UPDATE of {owner} in zone {zone} refused: {rcode}")
        log.info("TXT %s at %s in zone %s", "added" if add else "deleted", owner, zone)

    async def add_txt(self, name: str, value: str, ttl: int = 60) -> None:
        """Add one TXT value at `name`; other values there stay."""
        await self._update(name, value, ttl, add=True)

    async def delete_txt(self, name: str, value: str) -> None:
        """Delete one TXT value at `name`."""
        await self._update(name, value, 0, add=False)
