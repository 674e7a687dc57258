"""DNS lookups for the validation authority, through the configured resolver.

Every lookup goes to one resolver: the system's (`/etc/resolv.conf`) or the HOST:PORT given
in the configuration, as Pebble's `-dnsserver` does. dnspython's async `Resolver` is used
with its cache off (a validation must see the current records), absolute names (no search
list) and TCP fallback on truncation. It chases CNAME chains within one answer; when a
server answers only with the CNAME and not the target's records (an authoritative server for
one zone), the target is queried again, up to `MAX_CNAME_HOPS` times.

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
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from acmekit.protocol.problems import AcmeError, ProblemType, problem

log = logging.getLogger(__name__)

MAX_CNAME_HOPS = 8
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
            answer = await self._resolve(qname, rdtype)
            if answer.rrset is not None:
                return Lookup(name, tuple(_text(rdata) for rdata in answer.rrset))
            target = answer.canonical_name.to_text()
            if target == qname:
                return Lookup(name, ())
            qname = target
        raise dns_problem(f"more than {MAX_CNAME_HOPS} CNAMEs looking up {rdtype.name} for {name}")

    async def _resolve(self, qname: str, rdtype: dns.rdatatype.RdataType) -> dns.resolver.Answer:
        what = f"looking up {rdtype.name} for {qname.rstrip('.')}"
        lifetime = self._lifetime()
        try:
            # dnspython may overrun its lifetime a little; this bound does not.
            async with asyncio.timeout(lifetime):
                return await self._resolver.resolve(
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

    async def addresses(self, name: str) -> tuple[str, ...]:
        """A then AAAA addresses of `name`, both asked at once; a dns problem if none."""
        results = await asyncio.gather(
            self.query(name, dns.rdatatype.A),
            self.query(name, dns.rdatatype.AAAA),
            return_exceptions=True,
        )
        found = [ip for r in results if isinstance(r, Lookup) for ip in r.values]
        if found:
            return tuple(found)
        for r in results:
            if isinstance(r, AcmeError):
                raise r
            if isinstance(r, BaseException):
                raise dns_problem(f"{_first_line(r)} looking up {name}")
        raise dns_problem(f"no valid A or AAAA records found for {name}")


class AcmeDnsResolver(AbstractResolver):
    """aiohttp's resolver interface over `DnsClient`, so http-01 honours the configuration."""

    def __init__(self, client: DnsClient) -> None:
        self._client = client

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.rstrip(".")
        ips = await self._client.addresses(name)
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
