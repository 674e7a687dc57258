"""DNS lookups for the validation authority, through the configured resolver.

Every lookup goes to one resolver: the system's (`/etc/resolv.conf`) or the HOST:PORT given
in the configuration, as Pebble's `-dnsserver` does. dnspython's async `Resolver` is used
with its cache off (a validation must see the current records), absolute names (no search
list) and TCP fallback on truncation. It chases CNAME chains within one answer; when a
server answers only with the CNAME and not the target's records (an authoritative server for
one zone), the target is queried again, up to `MAX_CNAME_HOPS` times (`follow_cnames`, which
the CAA lookups share).

Plain questions (A, AAAA, TXT) go first through `stub.StubClient`, a lean UDP stub that
costs about a quarter of the resolver's CPU; whatever it does not fully understand (a
failure, truncation, an odd record) is asked again through the resolver, whose answer and
errors are then the ones reported. `addresses` asks A first and AAAA only when there is no
A address; the http-01 and tls-alpn-01 checks ask for AAAA (`ipv6_addresses`) when every A
address refused a connection.

DNSSEC (`dnssec.py`): a validating resolver answers a bogus name with SERVFAIL, a `dns`
problem like any other SERVFAIL, with the resolver's Extended DNS Error quoted when it gave
one; with `require-validating-resolver` each question asks for the AD bit and each `Lookup`
records whether its answers (every hop of a CNAME chain) were authenticated.

Failures become problems (RFC 8555 §6.7) of type `dns`, except that an existing name without
the records asked for is reported by the caller, which knows what "no records" means for its
challenge. Addresses the CA must not connect to (`reserved.py`) are dropped by
`addresses_for`, for a challenge's name and a redirect's target alike, and the socket's
peer is judged again once connected (`connect_checked`). Each lookup is
bounded by the validation's deadline (see `deadline`), ending a little before it so that a
silent resolver is reported as a DNS failure.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from acmekit.dnsbackend import CLOSING_BACKEND
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.validation.dnssec import (
    DnssecMode,
    authenticated,
    extended_errors,
    note_answers,
    validation_resolver,
)
from acmekit.server.validation.reserved import AddressPolicy
from acmekit.server.validation.stub import (
    decode_a,
    decode_aaaa,
    decode_txt,
    new_tuple,
    stub_for,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CNAME_HOPS = 8
STUB_ATTEMPT = 2.0  # seconds the stub waits for an answer (dnspython's per-try timeout)
_DECODERS: dict[int, Callable[[bytes], str]] = {
    dns.rdatatype.A: decode_a,
    dns.rdatatype.AAAA: decode_aaaa,
    dns.rdatatype.TXT: decode_txt,
}
# The names of the types looked up, as `RdataType.name` gives them (a property of the
# enum's, read in Python on every lookup)
_TYPE_NAMES = {t: t.name for t in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.TXT)}


def _type_name(rdtype: dns.rdatatype.RdataType) -> str:
    return _TYPE_NAMES.get(rdtype) or rdtype.name


# Loop time by which the current validation must end; set by the Validator for each task.
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "validation_deadline", default=None
)
# The lookups in flight for the current validation, by what they look up. One set per
# validation, shared with the tasks it starts (they copy the context, not the set): when
# the Validator's last bound fires during a lookup, the problem is a dns one.
in_flight: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "validation_lookups", default=None
)


class bound_at:
    """`asyncio.timeout_at(when)`, for the bounds every http-01 validation enters (the
    Validator's last one, the fetch's, its lookups'), with the same rules: when
    the time comes the task is cancelled, and that cancellation, once it reaches this
    block, is TimeoutError, unless the task was also cancelled from elsewhere meanwhile
    (`Task.uncancel` then leaves a count above the one on entry, and CancelledError goes
    on). It keeps no state machine and cannot be rescheduled: 1 µs less CPU per use.

    Entered with `with` as well as `async with` (nothing in it waits, and the two
    coroutines `async with` makes cost more than the rest of it). `loop`, when the caller
    has it, spares looking it up (on Python 3.11 every look-up is a getpid call). The
    timer is `call_later`: uvloop's `call_at` is a Python-level wrapper of it."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_task", "_when")

    def __init__(self, when: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._when = when
        self._loop = loop

    def __enter__(self) -> None:
        loop = self._loop if self._loop is not None else asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("bound_at is for use inside a task")
        self._task, self._cancelling, self._expired = task, task.cancelling(), False
        delay = self._when - loop.time()
        if delay <= 0:
            self._handle: asyncio.Handle = loop.call_soon(self._expire)
        else:
            self._handle = loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._task.cancel()
        self._expired = True

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self._handle.cancel()
        if self._expired:
            self._expired = False
            if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError from exc

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.__exit__(kind, exc, tb)


class CnameChainTooLong(Exception):
    """A CNAME chain longer than MAX_CNAME_HOPS (or a loop the resolver did not catch)."""


async def follow_cnames(
    ask: Callable[[str], Awaitable[tuple[tuple[T, ...] | None, str]]], qname: str
) -> tuple[T, ...]:
    """What `ask` finds at the end of the CNAME chain from `qname`; empty when the chain
    ends at a name without such records.

    `ask(name)` returns the records at the end of the chain its answer holds, or None and
    that chain's last name; a server that answers with a CNAME but not the records at its
    target (an authoritative server for one zone) is then asked again at the target.
    """
    start = qname
    for _ in range(MAX_CNAME_HOPS):
        values, canonical = await ask(qname)
        if values is not None:
            return values
        if canonical == qname:
            return ()
        qname = canonical
    raise CnameChainTooLong(f"more than {MAX_CNAME_HOPS} CNAMEs from {start.rstrip('.')}")


class Lookup(NamedTuple):
    """What a query found: `values` is empty when the name exists without such records.

    `authenticated`: the resolver set AD on every answer that led to `values` (asked for
    only with DNSSEC on; an insecure zone's answers are correctly unauthenticated)."""

    name: str
    values: tuple[str, ...]
    authenticated: bool = False


def dns_problem(detail: str) -> AcmeError:
    return problem(ProblemType.DNS, f"DNS problem: {detail}")


def _looking_up(qname: str, rdtype: dns.rdatatype.RdataType) -> str:
    return f"looking up {_type_name(rdtype)} for {qname.rstrip('.')}"


def _left(lifetime: float, qname: str, rdtype: dns.rdatatype.RdataType) -> float:
    """What is left of a lookup's `lifetime` for the resolver after the stub gave up;
    too little to ask in is the lookup's timeout."""
    if lifetime < 0.05:
        raise dns_problem(f"query timed out {_looking_up(qname, rdtype)}")
    return lifetime


class DnsClient:
    """A shared, cache-less stub resolver; one per Validator."""

    def __init__(
        self,
        server: tuple[str, int] | None,
        timeout: float,
        reachable: AddressPolicy | None = None,
        *,
        dnssec: DnssecMode = DnssecMode.OFF,
    ) -> None:
        self.reachable = reachable or AddressPolicy()
        self.dnssec = dnssec
        self._checking = dnssec is not DnssecMode.OFF  # read once per lookup
        self._resolver = validation_resolver(server, dnssec)
        self._stub = stub_for(server, self._resolver, ad=dnssec is not DnssecMode.OFF)
        self._timeout = timeout

    def _lifetime(self, loop: asyncio.AbstractEventLoop) -> float:
        end = deadline.get()
        if end is None:
            return self._timeout
        left = end - loop.time()
        return max(0.05, left - min(0.25, left / 10))

    async def query(self, name: str, rdtype: dns.rdatatype.RdataType) -> Lookup:
        """Records of `rdtype` at `name` as text, following CNAMEs; raises dns problems.

        `follow_cnames`'s walk, written out here: the closure and the two coroutines
        it took per lookup were 6% of a lookup's instructions. The stub is asked here
        too, not in a coroutine of its own: every coroutine between the task and the
        stub's wait is passed through again when the answer wakes the task."""
        start = name.rstrip(".") + "."
        what = f"looking up {_type_name(rdtype)} for {start[:-1]}"
        lookups = in_flight.get()
        if lookups is not None:
            lookups.add(what)
        stub = self._stub
        decode = _DECODERS.get(rdtype) if stub is not None else None
        loop = asyncio.get_running_loop()
        secure = True
        try:
            qname = start
            for _ in range(MAX_CNAME_HOPS):
                lifetime = self._lifetime(loop)
                reply = None
                if stub is not None and decode is not None:
                    started = loop.time()
                    reply = await stub.ask(
                        qname, rdtype, decode, min(STUB_ATTEMPT, lifetime), loop=loop
                    )
                    if reply is None:  # left to the resolver, in what time is left
                        lifetime = _left(lifetime - (loop.time() - started), qname, rdtype)
                if reply is None:
                    found, canonical, ad = await self._resolve(qname, rdtype, lifetime)
                elif reply.nxdomain:
                    raise dns_problem(f"NXDOMAIN {_looking_up(qname, rdtype)}")
                else:
                    found, canonical, ad = reply.values, reply.canonical, reply.authenticated
                secure = secure and ad
                if found is not None:
                    values = found
                    break
                if canonical == qname:
                    values = ()
                    break
                qname = canonical
            else:
                raise dns_problem(f"more than {MAX_CNAME_HOPS} CNAMEs {what}")
        except asyncio.CancelledError:
            lookups = None  # cut off: left in the set, for the Validator to name
            raise
        finally:
            if lookups is not None:
                lookups.discard(what)
        result = new_tuple(Lookup, (name, values, secure))  # see stub.new_tuple
        if self._checking:
            note_answers(result.authenticated)
            state = "secure (AD)" if result.authenticated else "not authenticated"
            log.info("DNSSEC: %s %s answer is %s", rdtype.name, name.rstrip("."), state)
        return result

    async def _resolve(
        self, qname: str, rdtype: dns.rdatatype.RdataType, lifetime: float
    ) -> tuple[tuple[str, ...] | None, str, bool]:
        """Through dnspython's resolver, within `lifetime` seconds: the values at the end
        of the answer's CNAME chain, or None and that chain's end; and whether the
        answer was authenticated (AD)."""
        what = f"looking up {rdtype.name} for {qname.rstrip('.')}"
        try:
            # dnspython may overrun its lifetime a little; this bound does not.
            async with asyncio.timeout(lifetime):
                answer = await self._resolver.resolve(
                    qname,
                    rdtype,
                    search=False,
                    raise_on_no_answer=False,
                    lifetime=lifetime,
                    backend=CLOSING_BACKEND,
                )
        except TimeoutError:
            raise dns_problem(f"query timed out {what}") from None
        except dns.resolver.NXDOMAIN:
            raise dns_problem(f"NXDOMAIN {what}") from None
        except dns.resolver.NoNameservers as exc:
            # A validating resolver's answer for a bogus name (RFC 4035 §5.5).
            raise dns_problem(f"SERVFAIL{extended_errors(exc)} {what}") from None
        except dns.exception.Timeout:
            raise dns_problem(f"query timed out {what}") from None
        except dns.exception.DNSException as exc:
            raise dns_problem(f"{_first_line(exc)} {what}") from None
        except OSError as exc:
            raise dns_problem(f"{exc.strerror or exc} {what}") from None
        ad = authenticated(answer.response)
        if answer.rrset is not None:
            return tuple(_text(rdata) for rdata in answer.rrset), qname, ad
        return None, answer.canonical_name.to_text(), ad

    async def addresses(self, name: str) -> Addresses:
        """The A addresses of `name`, or its AAAA ones when it has no A address.

        A lookup that fails is passed over when the other finds addresses; a dns problem
        when neither does (the A lookup's, when both fail).
        """
        first: Lookup | AcmeError
        try:
            first = await self.query(name, dns.rdatatype.A)
        except AcmeError as err:
            first = err
        else:
            if first.values:
                return new_tuple(Addresses, (first.values, False))
        second: Lookup | AcmeError
        try:
            second = await self.query(name, dns.rdatatype.AAAA)
        except AcmeError as err:
            second = err
        else:
            if second.values:
                return new_tuple(Addresses, (second.values, True))
        for result in (first, second):
            if isinstance(result, AcmeError):
                raise result
        raise dns_problem(f"no valid A or AAAA records found for {name}")

    async def ipv6_addresses(self, name: str) -> tuple[str, ...]:
        """The AAAA addresses of `name`; none when the lookup fails."""
        try:
            return (await self.query(name, dns.rdatatype.AAAA)).values
        except AcmeError:
            return ()


class Addresses(NamedTuple):
    """Addresses to try in order; `ipv6_asked` when AAAA was already asked (no A address)."""

    values: tuple[str, ...]
    ipv6_asked: bool


async def addresses_for(
    dns: DnsClient,
    host: str,
    deadline: float,
    *,
    ipv6: bool,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Addresses:
    """A addresses of `host` (AAAA if none), or with `ipv6` its AAAA ones (after every A
    address refused); an IP address is its own and only address. Reserved addresses
    (`reserved.py`) are dropped before anything connects; a connection problem when
    every address found is one."""
    if _could_be_address(host) and _is_address(host):
        return permitted(dns.reachable, host, Addresses((host,), ipv6_asked=True))
    try:
        with bound_at(deadline, loop):  # the lookups in this coroutine: one fewer to wake
            if ipv6:
                found = Addresses(await dns.ipv6_addresses(host), True)
            else:
                found = await dns.addresses(host)
    except TimeoutError:
        raise dns_problem(f"timeout looking up {host}") from None
    return permitted(dns.reachable, host, found)


@functools.lru_cache(maxsize=1024)
def _is_address(host: str) -> bool:
    """Whether `host` is an IP address in text (remembered: parsing one cost 5 µs)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _could_be_address(host: str) -> bool:
    """False when `host` cannot be an IP address in text: an IPv6 address has a colon,
    an IPv4 address (as `ipaddress` reads it) only digits and dots. A name then skips
    `ipaddress.ip_address`, which tries both and raises (3 µs per name)."""
    return ":" in host or host.replace(".", "").isdigit()


def permitted(policy: AddressPolicy, host: str, found: Addresses) -> Addresses:
    """`found` less the addresses `policy` refuses; a connection problem if none is left."""
    whys = [policy.refusal(a) for a in found.values]
    if whys.count(None) == len(whys):
        return found  # the usual case: every address may be connected to
    refusals = list(zip(found.values, whys, strict=True))
    kept = tuple(a for a, why in refusals if why is None)
    if found.values and not kept:
        why = refusals[0][1]
        raise problem(ProblemType.CONNECTION, f"refusing to connect to {host}: {why}")
    for address, why in refusals:
        if why is not None:
            log.info("not connecting to %s of %s: %s", address, host, why)
    return Addresses(kept, found.ipv6_asked)


def peer_refusal(
    policy: AddressPolicy, writer: asyncio.StreamWriter | asyncio.BaseTransport
) -> str | None:
    """Why the CA must not talk to the peer this socket is connected to (its
    getpeername), or None. A scope (`fe80::1%eth0`) is not part of the address."""
    peer = writer.get_extra_info("peername")
    if not peer:
        return "the connection has no peer address"
    return policy.refusal(str(peer[0]).split("%")[0])


async def connect_checked(
    policy: AddressPolicy,
    host: str,
    address: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to `address` (for `host`, named in the problem), whose peer is
    judged by `policy` once connected and
    before a byte is sent (the TLS handshake, if `tls`, comes after). The address was
    judged before connecting; judging the socket's own peer as well means no resolution
    between the check and the connection (DNS rebinding), now or in a later change, can
    lead the CA to a refused address. A refused peer is a `connection` problem."""
    reader, writer = await asyncio.open_connection(address, port)
    try:
        why = peer_refusal(policy, writer)
        if why is not None:
            raise problem(ProblemType.CONNECTION, f"{host}: refusing the connection: {why}")
        if tls is not None:
            await writer.start_tls(tls, server_hostname=server_hostname)
    except BaseException:
        writer.transport.abort()
        raise
    return reader, writer


async def open_checked(
    policy: AddressPolicy,
    host: str,
    address: str,
    port: int,
    protocol: asyncio.Protocol,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> asyncio.Transport:
    """`connect_checked` for a protocol of the caller's (no stream objects): the same
    judgement of the socket's peer, before a byte is sent and before the TLS handshake.
    The transport returned delivers to `protocol` (over TLS, if `tls`). `loop`: the
    running loop, when the caller has it."""
    if loop is None:
        loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(lambda: protocol, address, port)
    try:
        why = peer_refusal(policy, transport)
        if why is not None:
            raise problem(ProblemType.CONNECTION, f"{host}: refusing the connection: {why}")
        if tls is not None:
            secured = await loop.start_tls(
                transport, protocol, tls, server_hostname=server_hostname
            )
            if secured is None:  # the connection ended during the handshake
                raise ConnectionResetError("the connection closed during the TLS handshake")
            transport = secured
    except BaseException:
        transport.abort()
        raise
    return transport


async def first_accepting(
    dns: DnsClient,
    host: str,
    deadline: float,
    attempt: Callable[[str], Awaitable[T | None]],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> T | None:
    """`attempt` each address of `host` in turn until one does not refuse (returns a value
    rather than None); AAAA addresses are tried when every A address refused. None when
    every address refused. What `attempt` raises ends the search. (`loop`: as
    `addresses_for` takes it.)"""
    found = await addresses_for(dns, host, deadline, ipv6=False, loop=loop)
    for address in found.values:
        if (result := await attempt(address)) is not None:
            return result
    if found.ipv6_asked:
        return None
    log.debug("every A address of %s refused; trying AAAA", host)
    for address in (await addresses_for(dns, host, deadline, ipv6=True, loop=loop)).values:
        if (result := await attempt(address)) is not None:
            return result
    return None


def _text(rdata: object) -> str:
    """An A/AAAA address, or a TXT record's strings joined (RFC 7208 §3.3 style)."""
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return b"".join(strings).decode("utf-8", errors="replace")
    return str(rdata)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
