"""DNS lookups for the validation authority, through the configured resolver.

Every lookup goes to one resolver: the system's (`/etc/resolv.conf`) or the HOST:PORT given
in the configuration, as Pebble's `-dnsserver` does. dnspython's async `Resolver` is used
with its cache off (a validation must see the current records), absolute names (no search
list) and TCP fallback on truncation. It chases CNAME chains within one answer; when a
server answers only with the CNAME and not the target's records (an authoritative server for
one zone), the target is queried again, up to `MAX_CNAME_HOPS` times.

Plain questions (A, AAAA, TXT) go first through `stub.StubClient`, a lean UDP stub that
costs about a quarter of the resolver's CPU; whatever it does not fully understand (a
failure, truncation, an odd record) is asked again through the resolver, whose answer and
errors are then the ones reported. `addresses` asks A first and AAAA only when there is no
A address; the http-01 and tls-alpn-01 checks ask for AAAA (`ipv6_addresses`) when every A
address refused a connection.

Failures become problems (RFC 8555 §6.7) of type `dns`, except that an existing name without
the records asked for is reported by the caller, which knows what "no records" means for its
challenge. Each lookup is bounded by the validation's deadline (see `deadline`), ending a
little before it so that a silent resolver is reported as a DNS failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.validation.stub import decode_a, decode_aaaa, decode_txt, stub_for

log = logging.getLogger(__name__)

MAX_CNAME_HOPS = 8
STUB_ATTEMPT = 2.0  # seconds the stub waits for an answer (dnspython's per-try timeout)
_DECODERS: dict[int, Callable[[bytes], str]] = {
    dns.rdatatype.A: decode_a,
    dns.rdatatype.AAAA: decode_aaaa,
    dns.rdatatype.TXT: decode_txt,
}
# Loop time by which the current validation must end; set by the Validator for each task.
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "validation_deadline", default=None
)


@dataclass(frozen=True)
class Lookup:
    """What a query found: `values` is empty when the name exists without such records."""

    name: str
    values: tuple[str, ...]


def dns_problem(detail: str) -> AcmeError:
    return problem(ProblemType.DNS, f"DNS problem: {detail}")


class DnsClient:
    """A shared, cache-less stub resolver; one per Validator."""

    def __init__(self, server: tuple[str, int] | None, timeout: float) -> None:
        if server is None:
            self._resolver = dns.asyncresolver.Resolver()
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [server[0]]
            self._resolver.port = server[1]
        self._resolver.cache = None
        self._stub = stub_for(server, self._resolver)
        self._timeout = timeout

    def _lifetime(self) -> float:
        end = deadline.get()
        if end is None:
            return self._timeout
        left = end - asyncio.get_running_loop().time()
        return max(0.05, left - min(0.25, left / 10))

    async def query(self, name: str, rdtype: dns.rdatatype.RdataType) -> Lookup:
        """Records of `rdtype` at `name` as text, following CNAMEs; raises dns problems."""
        qname = name.rstrip(".") + "."
        for _ in range(MAX_CNAME_HOPS):
            values, target = await self._resolve(qname, rdtype)
            if values is not None:
                return Lookup(name, values)
            if target == qname:
                return Lookup(name, ())
            qname = target
        raise dns_problem(f"more than {MAX_CNAME_HOPS} CNAMEs looking up {rdtype.name} for {name}")

    async def _resolve(
        self, qname: str, rdtype: dns.rdatatype.RdataType
    ) -> tuple[tuple[str, ...] | None, str]:
        """The values at the end of the answer's CNAME chain, or None and that chain's end."""
        what = f"looking up {rdtype.name} for {qname.rstrip('.')}"
        lifetime = self._lifetime()
        decode = _DECODERS.get(rdtype)
        if self._stub is not None and decode is not None:
            loop = asyncio.get_running_loop()
            started = loop.time()
            reply = await self._stub.ask(qname, rdtype, decode, min(STUB_ATTEMPT, lifetime))
            if reply is not None:
                if reply.nxdomain:
                    raise dns_problem(f"NXDOMAIN {what}")
                return reply.values, reply.canonical
            lifetime -= loop.time() - started
            if lifetime < 0.05:
                raise dns_problem(f"query timed out {what}")
        try:
            # dnspython may overrun its lifetime a little; this bound does not.
            async with asyncio.timeout(lifetime):
                answer = await self._resolver.resolve(
                    qname, rdtype, search=False, raise_on_no_answer=False, lifetime=lifetime
                )
        except TimeoutError:
            raise dns_problem(f"query timed out {what}") from None
        except dns.resolver.NXDOMAIN:
            raise dns_problem(f"NXDOMAIN {what}") from None
        except dns.resolver.NoNameservers:
            raise dns_problem(f"SERVFAIL {what}") from None
        except dns.exception.Timeout:
            raise dns_problem(f"query timed out {what}") from None
        except dns.exception.DNSException as exc:
            raise dns_problem(f"{_first_line(exc)} {what}") from None
        except OSError as exc:
            raise dns_problem(f"{exc.strerror or exc} {what}") from None
        if answer.rrset is not None:
            return tuple(_text(rdata) for rdata in answer.rrset), qname
        return None, answer.canonical_name.to_text()

    async def addresses(self, name: str) -> Addresses:
        """The A addresses of `name`, or its AAAA ones when it has no A address.

        A lookup that fails is passed over when the other finds addresses; a dns problem
        when neither does (the A lookup's, when both fail).
        """
        first = await self._settle(self.query(name, dns.rdatatype.A))
        if isinstance(first, Lookup) and first.values:
            return Addresses(first.values, ipv6_asked=False)
        second = await self._settle(self.query(name, dns.rdatatype.AAAA))
        if isinstance(second, Lookup) and second.values:
            return Addresses(second.values, ipv6_asked=True)
        for result in (first, second):
            if isinstance(result, AcmeError):
                raise result
        raise dns_problem(f"no valid A or AAAA records found for {name}")

    async def ipv6_addresses(self, name: str) -> tuple[str, ...]:
        """The AAAA addresses of `name`; none when the lookup fails."""
        result = await self._settle(self.query(name, dns.rdatatype.AAAA))
        return result.values if isinstance(result, Lookup) else ()

    @staticmethod
    async def _settle(lookup: Coroutine[Any, Any, Lookup]) -> Lookup | AcmeError:
        try:
            return await lookup
        except AcmeError as err:
            return err


@dataclass(frozen=True)
class Addresses:
    """Addresses to try in order; `ipv6_asked` when AAAA was already asked (no A address)."""

    values: tuple[str, ...]
    ipv6_asked: bool


@dataclass
class AddressPlan:
    """Which addresses `AcmeDnsResolver` hands aiohttp during one fetch.

    The resolver sets `ipv4_given` when it gave A addresses (so AAAA was not asked); the
    fetch, when every one of them refused, sets `ipv6` and tries again with AAAA only.
    """

    ipv6: bool = False
    ipv4_given: bool = False


class NoIpv6Addresses(Exception):
    """Raised through aiohttp when a retry over AAAA finds no AAAA address."""


# The plan of the fetch under way; set by http-01 around each request.
address_plan: contextvars.ContextVar[AddressPlan | None] = contextvars.ContextVar(
    "address_plan", default=None
)


class AcmeDnsResolver(AbstractResolver):
    """aiohttp's resolver interface over `DnsClient`, so http-01 honours the configuration."""

    def __init__(self, client: DnsClient) -> None:
        self._client = client

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.rstrip(".")
        plan = address_plan.get()
        if plan is not None and plan.ipv6:
            ips = await self._client.ipv6_addresses(name)
            if not ips:
                raise NoIpv6Addresses(name)
        else:
            found = await self._client.addresses(name)
            ips = found.values
            if plan is not None and not found.ipv6_asked:
                plan.ipv4_given = True
        log.debug("resolved %s to %d addresses", name, len(ips))
        return [_result(name, ip, port) for ip in ips]

    async def close(self) -> None:
        return None


def _result(name: str, ip: str, port: int) -> ResolveResult:
    v6 = ipaddress.ip_address(ip).version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    return {"hostname": name, "host": ip, "port": port, "family": family, "proto": 0, "flags": 0}


def _text(rdata: object) -> str:
    """An A/AAAA address, or a TXT record's strings joined (RFC 7208 §3.3 style)."""
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return b"".join(strings).decode("utf-8", errors="replace")
    return str(rdata)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
