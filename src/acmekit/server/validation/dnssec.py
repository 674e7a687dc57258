"""DNSSEC on the validation authority's lookups, through a validating resolver.

The CA does not validate DNSSEC itself: as Let's Encrypt's Boulder trusts its Unbound, it
trusts the resolver it is configured with (`dns_resolver`). A validating resolver answers a
name whose signatures do not verify ("bogus", RFC 4035 §4.3) with SERVFAIL, and every
lookup of the validation authority (dns-01's TXT, CAA, the A/AAAA of http-01 and
tls-alpn-01) already turns SERVFAIL into a `dns` problem: a bogus CAA set is never read as
"no CAA records, so issuance is allowed", a bogus TXT record never validates. That holds in
every mode; the modes say how much the CA checks that its resolver does that job:

- `off` (the default): questions are sent as before (no EDNS, no AD bit).
- `require-validating-resolver`: every question sets the AD bit (RFC 6840 §5.7: a resolver
  then says in its answer's AD bit whether it validated the answer as secure) and carries
  EDNS(0), so that a SERVFAIL can explain itself with an Extended DNS Error (RFC 8914, e.g.
  "DNSSEC Bogus"), which the problem's detail quotes. Whether each answer was authenticated
  is logged. At start the CA asks the resolver for the SOA of a name known to be signed
  (`dnssec_probe`, the root by default) and refuses to start unless the answer has AD=1: a
  resolver that does not validate would otherwise go unnoticed, because its answers look
  the same as a validating resolver's answers for unsigned zones.

In that mode the CA also records, with each authorization, whether the answers its
validation relied on were authenticated (`Tally`): every answer of the challenge's lookups,
and every answer of the CAA lookups, each set on its own. A lookup notes its answers in
the tally of the task that asked (a context variable, so concurrent validations on one
event loop keep theirs apart).

The CD (checking disabled) bit is never set: it would ask the resolver to hand over bogus
answers. AD=1 is not required of each answer: an unsigned zone, or one below an unsigned
delegation, is "insecure" (RFC 4035 §4.3), correctly answered with AD=0, and telling it from a
stripped signature needs the chain of trust, which is the resolver's job.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import dns.asyncresolver
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rdatatype
import dns.resolver

from acmekit.dnsbackend import CLOSING_BACKEND
from acmekit.protocol.problems import AcmeError, ProblemType

log = logging.getLogger(__name__)

EDNS_PAYLOAD = 1232  # the DNS Flag Day 2020 size, which avoids IP fragmentation


class DnssecMode(StrEnum):
    """`[validation] dnssec`."""

    OFF = "off"
    REQUIRE_VALIDATING_RESOLVER = "require-validating-resolver"


class ResolverNotValidating(Exception):
    """The configured resolver did not show that it validates DNSSEC."""


def configure_resolver(resolver: dns.resolver.BaseResolver, mode: DnssecMode) -> None:
    """Ask with AD=1 and EDNS(0) when `mode` wants DNSSEC results reported."""
    if mode is DnssecMode.OFF:
        return
    resolver.flags = dns.flags.RD | dns.flags.AD
    resolver.use_edns(0, 0, EDNS_PAYLOAD)


def validation_resolver(
    server: tuple[str, int] | None, mode: DnssecMode
) -> dns.asyncresolver.Resolver:
    """The resolver validation asks: `server` (HOST, PORT), else the system's (the CA's
    `--dns-resolver` unset, as in production); no cache, so every lookup is asked afresh;
    the DNSSEC flags of `mode`."""
    if server is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.cache = None
    configure_resolver(resolver, mode)
    return resolver


def authenticated(message: dns.message.Message | None) -> bool:
    """Whether the resolver validated this answer as secure (its AD bit)."""
    return message is not None and bool(message.flags & dns.flags.AD)


# The answers noted by lookups of the current task: True for each authenticated one.
_answers: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "dnssec_answers", default=None
)


def note_answers(secure: bool) -> None:
    """A lookup's answers (a CNAME chain, counted as one) were authenticated or not."""
    found = _answers.get()
    if found is not None:
        found.append(secure)


class Tally:
    """Whether the answers noted while it was open were all authenticated: None when
    none were noted (no DNS lookup, or DNSSEC off) or when the step ended in a `dns`
    problem (what it relied on was never all there), else True only if every one was."""

    def __init__(self) -> None:
        self._found: list[bool] = []
        self._incomplete = False

    @property
    def authenticated(self) -> bool | None:
        if self._incomplete or not self._found:
            return None
        return all(self._found)

    @contextmanager
    def counting(self) -> Iterator[Tally]:
        token = _answers.set(self._found)
        try:
            yield self
        except AcmeError as exc:
            self._incomplete = exc.problem.type == ProblemType.DNS
            raise
        finally:
            _answers.reset(token)


def extended_errors(exc: dns.resolver.NoNameservers) -> str:
    """The Extended DNS Errors (RFC 8914) the failed answers carried, as
    " (DNSSEC Bogus: ...)" to append to "SERVFAIL"; "" when they carried none."""
    explained: list[str] = []
    for entry in exc.kwargs.get("errors") or []:
        response = entry[-1] if isinstance(entry, tuple) and entry else None
        if isinstance(response, dns.message.Message):
            explained.extend(_ede_text(option) for option in response.extended_errors())
    if not explained:
        return ""
    return f" ({'; '.join(dict.fromkeys(explained))[:300]})"


def _ede_text(option: dns.edns.EDEOption) -> str:
    try:
        code = dns.edns.EDECode(option.code).name.replace("_", " ").title()
    except ValueError:
        code = f"code {option.code}"
    code = code.replace("Dnssec", "DNSSEC").replace("Dnskey", "DNSKEY").replace("Rrsig", "RRSIG")
    return f"{code}: {option.text}" if option.text else code


async def probe_validating_resolver(
    server: tuple[str, int] | None, name: str, wait: float = 5.0
) -> None:
    """Raise ResolverNotValidating unless the resolver answers the SOA of `name` (a signed
    zone's apex) with AD=1 within `wait` seconds."""
    resolver = validation_resolver(server, DnssecMode.REQUIRE_VALIDATING_RESOLVER)
    where = "the system's resolver" if server is None else f"resolver {server[0]}:{server[1]}"
    qname = name.rstrip(".") + "."
    try:
        async with asyncio.timeout(wait):
            answer = await resolver.resolve(
                qname, dns.rdatatype.SOA, search=False, lifetime=wait, backend=CLOSING_BACKEND
            )
    except dns.resolver.NoNameservers as exc:
        raise ResolverNotValidating(
            f"{where} could not answer SOA {qname} (SERVFAIL{extended_errors(exc)}); "
            "[validation] dnssec = 'require-validating-resolver' needs a validating resolver"
        ) from None
    except (dns.exception.DNSException, TimeoutError, OSError) as exc:
        why = (str(exc) or type(exc).__name__).splitlines()[0][:200]
        raise ResolverNotValidating(f"{where} did not answer SOA {qname}: {why}") from None
    if not authenticated(answer.response):
        raise ResolverNotValidating(
            f"{where} answered SOA {qname} without the AD bit: it does not validate DNSSEC "
            "(or has no trust anchor for that name); [validation] dnssec = "
            "'require-validating-resolver' needs a validating resolver"
        )
    log.info("%s validates DNSSEC (SOA %s came back authenticated)", where, qname)
