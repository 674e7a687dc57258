"""Small DNS lookups for the dns-01 solvers, straight to one server with dnspython.

Every lookup is one question to one server, given as (host, port), so a test can point
everything at a server on a loopback port and nothing else is consulted. UDP is tried
first and the question is repeated over TCP when the answer is truncated (RFC 7766);
`tcp=True` asks over TCP only, as for authoritative servers, where a closed port is
told at once instead of by a timeout.

- `follow_cname`: the CNAME chain at a name, up to MAX_CNAME_CHAIN links, refusing
  loops (the delegation of `_acme-challenge` names that acme-dns popularized). It asks
  one CNAME question per link, so it finds where the TXT record must go before the
  record exists. That is a different question from the CA's (the records at the end of
  a chain, asked of a resolver: `server.validation.resolve.follow_cnames`) and from the
  DNS server's (building a chain inside the zones it serves), so the three stay apart;
  all stop at 8 links.
- `find_zone`: the closest enclosing zone of a name: the first of the name and its
  ancestors that has an SOA record of its own (RFC 1034 §4.3.2), taking the SOA that a
  negative answer carries in its authority section as a shortcut (RFC 2308 §3).
"""

from __future__ import annotations

import contextlib

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig

from acmekit.client.solvers.errors import SolverError
from acmekit.dnsbackend import CLOSING_BACKEND

Server = tuple[str, int]
MAX_CNAME_CHAIN = 8
DNS_PORT = 53
TIMEOUT = 5.0


def system_resolver() -> Server:
    """The first nameserver the system is configured with (resolv.conf), on port 53."""
    servers = dns.resolver.Resolver().nameservers
    if not servers:
        raise SolverError("no system resolver is configured; give one explicitly")
    return (str(servers[0]), DNS_PORT)


def absolute(name: str) -> str:
    """`name` with exactly one trailing dot, in lower case."""
    return name.rstrip(".").lower() + "."


async def query(
    server: Server,
    name: str,
    rdtype: str,
    *,
    tcp: bool = False,
    recursion: bool = True,
    keyring: dns.tsig.Key | None = None,
) -> dns.message.Message:
    """One question to `server`; the response, whatever its RCODE."""
    question = dns.message.make_query(name, rdtype)
    if not recursion:
        question.flags &= ~dns.flags.RD
    if keyring is not None:
        question.use_tsig(keyring)
    host, port = server
    if not tcp:
        # A truncated answer (TC) is asked again over TCP (RFC 7766 §5), also one cut
        # inside a record, which RFC 1035 §4.2.1 allows and dnspython would else reject
        # as malformed: `Truncated` is raised for both.
        with contextlib.suppress(dns.message.Truncated):
            return await dns.asyncquery.udp(
                question,
                host,
                port=port,
                timeout=TIMEOUT,
                raise_on_truncation=True,
                backend=CLOSING_BACKEND,
            )
    return await dns.asyncquery.tcp(
        question, host, port=port, timeout=TIMEOUT, backend=CLOSING_BACKEND
    )


def _records(response: dns.message.Message, rdtype: int) -> list[tuple[str, list[str]]]:
    """(owner, values) of each answer RRset of `rdtype`, values in presentation form."""
    out: list[tuple[str, list[str]]] = []
    for rrset in response.answer:
        if rrset.rdtype == rdtype:
            out.append((rrset.name.to_text().lower(), [r.to_text() for r in rrset]))
    return out


def txt_values(response: dns.message.Message) -> set[str]:
    """Every TXT string in the answer (a chain's CNAMEs lead to them)."""
    values: set[str] = set()
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            values.update(b"".join(r.strings).decode(errors="replace") for r in rrset)
    return values


async def follow_cname(server: Server, name: str, limit: int = MAX_CNAME_CHAIN) -> str:
    """Where a chain of CNAMEs starting at `name` ends (`name` itself if there is none)."""
    current = absolute(name)
    seen = [current]
    for _ in range(limit + 1):
        response = await query(server, current, "CNAME")
        targets = [v for owner, vs in _records(response, dns.rdatatype.CNAME) for v in vs
                   if owner == current]  # fmt: skip
        if response.rcode() != dns.rcode.NOERROR or not targets:
            return current
        current = absolute(targets[0])
        if current in seen:
            raise SolverError(f"CNAME loop at {name}: {' -> '.join([*seen, current])}")
        seen.append(current)
    raise SolverError(f"CNAME chain at {name} longer than {limit}: {' -> '.join(seen)}")


def _candidates(name: str) -> list[str]:
    labels = absolute(name).rstrip(".").split(".")
    return [".".join(labels[i:]) + "." for i in range(len(labels))]


async def find_zone(
    server: Server,
    name: str,
    *,
    tcp: bool = False,
    keyring: dns.tsig.Key | None = None,
    authoritative: bool = False,
) -> str:
    """The zone `name` belongs to, as `server` sees it (absolute, lower case).

    With `authoritative`, only an SOA in an answer with the AA flag counts, as when
    asking a zone's primary before sending it an UPDATE.
    """
    for candidate in _candidates(name):
        response = await query(server, candidate, "SOA", tcp=tcp, keyring=keyring)
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            continue
        if authoritative and not response.flags & dns.flags.AA:
            continue
        if any(owner == candidate for owner, _ in _records(response, dns.rdatatype.SOA)):
            return candidate
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA and not response.answer:
                return absolute(rrset.name.to_text())
    raise SolverError(f"no zone found for {name} at {server[0]}:{server[1]}")


async def nameserver_addresses(server: Server, zone: str) -> list[str]:
    """The addresses (A, then AAAA) of the zone's NS hosts, looked up through `server`."""
    response = await query(server, zone, "NS")
    hosts = [v for _, vs in _records(response, dns.rdatatype.NS) for v in vs]
    addresses: list[str] = []
    for host in hosts:
        for rdtype in ("A", "AAAA"):
            try:
                answer = await query(server, host, rdtype)
            except (OSError, dns.exception.DNSException):
                continue
            kind = dns.rdatatype.from_text(rdtype)
            addresses += [a for _, vs in _records(answer, kind) for a in vs]
    return list(dict.fromkeys(addresses))
