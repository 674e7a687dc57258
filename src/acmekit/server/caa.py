"""CAA checking: may this CA issue for a name (RFC 8659, with RFC 8657's parameters)?

Two parts, kept apart so the rules can be tested without a network:

`caa_permits` is pure. Given the relevant record set (RFC 8659 §3) it applies §4:

- An empty set permits issuance.
- A record whose tag we do not understand and whose flags carry the critical bit (128)
  forbids issuance (§4.1). As Let's Encrypt's Boulder does, the bit of value 1 counts as
  critical too: it is a common misreading of the RFC, and refusing is the safe side.
- For a wildcard name the `issuewild` records are used when there are any, else the
  `issue` records (§4.3); for other names only `issue` records (issuewild is ignored). If
  no record of the chosen tag is present, CAA does not restrict issuance (§4).
- Otherwise some record of the chosen tag must authorize us: its value parses as
  `[issuer-domain-name] [";" parameters]` (§4.2), its domain is one of our identities
  (compared case-insensitively), and its parameters allow the request. An empty domain
  (`";"` alone, or an empty value) names no CA: it authorizes nobody. A value that does not
  parse authorizes nobody. RFC 8657: `accounturi` must equal the account's URL (§3) and
  `validationmethods` must list the method used (§4). Unknown parameters are ignored,
  and so are empty segments (a trailing ";"); a parameter given twice makes the value
  malformed.

`CaaChecker` does the I/O: tree climbing (§3) asks for CAA at the name, then at each
parent up to but excluding the root; the first non-empty set is the relevant one. The
names are asked `CLIMB_BATCH` at a time (one stub socket's worth) and the answers read in
order; the next batch only when every set in this one was empty. The resolver follows
CNAMEs (§3: the alias target's CAA set is used); when a server answers with only the
CNAME, the target is asked again. Each question goes first through the validation
authority's lean UDP stub (`validation.stub`), and through dnspython's resolver when the
stub leaves it (a failure, truncation, an odd record), one name at a time, the climb
ending at the first failure. So a check has one lookup (about one socket) in flight at a
time, whatever the name's length (§3 gives no leave to stop climbing short of the
top-level domain, so the number of names is not ours to cut), and the checker lets
`in_flight` lookups of all its checks be in flight at once, at most `per_account` of them
one account's, the accounts waiting for a slot taking turns; a check that cannot get a
slot before its time is up fails as a timeout. NXDOMAIN or NODATA is an empty set. Any other
failure (SERVFAIL, REFUSED, timeout) means CAA could not be checked, and issuance is
refused, as Let's Encrypt does (§4's allowance to proceed is not used). Records that
forbid issuance are problems of type `caa` (RFC 8555 §6.7: "CAA records forbid the CA")
with status 403; a lookup that fails is a `dns` problem ("a problem with a DNS query
during identifier validation"), as Boulder reports it: no record forbade anything, and
the domain's operator has a resolver or nameserver to fix. Both carry the identifier.

DNSSEC (`validation.dnssec`): behind a validating resolver a bogus CAA answer (or a bogus
denial that a name has CAA records) comes back as SERVFAIL, so it is that `dns` problem,
never an empty set that would permit issuance. With `require-validating-resolver` the
questions ask for the AD bit and EDNS, a SERVFAIL's Extended DNS Error is quoted, and
whether the relevant set was authenticated is logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.rdtypes.ANY.CAA
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
from acmekit.server.validation.resolve import STUB_ATTEMPT, CnameChainTooLong, follow_cnames
from acmekit.server.validation.slots import Slots
from acmekit.server.validation.stub import UDP_MAX_QUERIES, Reply, decode_caa, stub_for

log = logging.getLogger(__name__)

CRITICAL_FLAGS = 0x80 | 0x01
# Names of the climb asked at once through the stub: as many as one of its sockets carries.
CLIMB_BATCH = UDP_MAX_QUERIES
# A checker's lookups in flight at once, process-wide: the stub's batches and the
# resolver's questions, each about one socket (a check has at most one in flight).
LOOKUPS_IN_FLIGHT = 256
# Of those, how many one account's checks may hold (`validation.slots`): an account whose
# names lead to silent nameservers holds each of its slots until the lookup times out, and
# must not leave another account's check waiting out its time for one ([caa]
# lookups_per_account).
LOOKUPS_PER_ACCOUNT = 32
_LOOKUP_FAILURES = (dns.exception.DNSException, TimeoutError, OSError, CnameChainTooLong)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PARAMETER = re.compile(rf"({_LABEL})[ \t]*=[ \t]*([\x21-\x3a\x3c-\x7e]*)")
_METHODS = re.compile(rf"{_LABEL}(?:,{_LABEL})*")


class CaaTag(StrEnum):
    """Property tags we understand (RFC 8659 §4, and the IANA registry)."""

    ISSUE = "issue"
    ISSUEWILD = "issuewild"
    IODEF = "iodef"
    ISSUEMAIL = "issuemail"
    ISSUEVMC = "issuevmc"
    CONTACTEMAIL = "contactemail"
    CONTACTPHONE = "contactphone"


KNOWN_TAGS = frozenset(tag.value for tag in CaaTag)


class CaaParameter(StrEnum):
    """Issue parameters of RFC 8657."""

    ACCOUNT_URI = "accounturi"
    VALIDATION_METHODS = "validationmethods"


@dataclass(frozen=True)
class CaaRecord:
    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        return bool(self.flags & CRITICAL_FLAGS)

    def __str__(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


@dataclass(frozen=True)
class IssueValue:
    """A parsed issue/issuewild value: the CA's domain ("" for none) and its parameters."""

    domain: str
    parameters: tuple[tuple[str, str], ...] = ()

    def parameter(self, name: CaaParameter) -> str | None:
        return next((v for k, v in self.parameters if k == name), None)


def parse_issue_value(value: str) -> IssueValue:
    """RFC 8659 §4.2's issue-value; raises ValueError when it does not parse."""
    domain, semicolon, rest = value.partition(";")
    domain = domain.strip(" \t")
    if domain and not _DOMAIN.fullmatch(domain):
        raise ValueError(f"bad issuer domain name {domain!r}")
    if not semicolon or not rest.strip(" \t"):
        return IssueValue(domain.lower())
    parameters: list[tuple[str, str]] = []
    for part in filter(None, (p.strip(" \t") for p in rest.split(";"))):
        match = _PARAMETER.fullmatch(part)
        if match is None:
            raise ValueError(f"bad parameter {part!r}")
        key = match.group(1).lower()
        if any(key == k for k, _ in parameters):
            raise ValueError(f"parameter {key} given twice")
        parameters.append((key, match.group(2)))
    return IssueValue(domain.lower(), tuple(parameters))


def caa_permits(
    records: Sequence[CaaRecord],
    *,
    identities: Sequence[str],
    wildcard: bool,
    account_uri: str,
    method: str,
) -> tuple[bool, str]:
    """Whether the relevant CAA set `records` lets us issue; the reason, in words."""
    if not records:
        return True, "no CAA records"
    for record in records:
        if record.critical and record.tag.lower() not in KNOWN_TAGS:
            return False, f"{record} is critical and its tag is not understood"
    tag = _governing_tag(records, wildcard)
    chosen = [r for r in records if r.tag.lower() == tag]
    if not chosen:
        return True, "no issue or issuewild records restrict issuance"
    ours = frozenset(i.lower().rstrip(".") for i in identities)
    faults = []
    for record in chosen:
        fault = _fault(record, ours, account_uri, method)
        if fault is None:
            return True, f"{record} permits issuance"
        faults.append(f"{record} {fault}")
    return False, "; ".join(faults)


def _governing_tag(records: Sequence[CaaRecord], wildcard: bool) -> CaaTag:
    if wildcard and any(r.tag.lower() == CaaTag.ISSUEWILD for r in records):
        return CaaTag.ISSUEWILD
    return CaaTag.ISSUE


def _slot_key(account_uri: str) -> str:
    """The account's key to its share of the lookup slots: its URL's path. Without a
    configured base URL, the URL is built from the request's Host, which the listener
    matches case-insensitively (RFC 9110 §4.2.3): keyed by the whole URL, one account
    would have a share for each spelling of the host."""
    return urlsplit(account_uri).path


def _fault(record: CaaRecord, ours: frozenset[str], account_uri: str, method: str) -> str | None:
    """Why `record` does not authorize this request, or None if it does."""
    try:
        issue = parse_issue_value(record.value)
    except ValueError as exc:
        return f"does not parse ({exc})"
    if not issue.domain:
        return "forbids issuance by any CA"
    if issue.domain not in ours:
        return f"names another CA ({issue.domain})"
    uri = issue.parameter(CaaParameter.ACCOUNT_URI)
    if uri is not None and uri != account_uri:
        return "is for another account (accounturi)"
    methods = issue.parameter(CaaParameter.VALIDATION_METHODS)
    if methods is not None and not _lists_method(methods, method):
        return f"does not allow validation by {method} (validationmethods)"
    return None


def _lists_method(methods: str, method: str) -> bool:
    return bool(_METHODS.fullmatch(methods)) and method in methods.split(",")


class CaaChecker:
    """Looks up the relevant CAA set through one resolver and applies `caa_permits`.

    `resolver` is the HOST, PORT to ask (None: the system's); `identities` are the issuer
    domain names that mean this CA in an issue record; `dnssec` as for the validation's
    lookups (`validation.dnssec`); `in_flight`, how many of its lookups (a batch of the
    climb through the stub, or one question through the resolver: about a socket each)
    may be in flight at once, its checks together (one checker serves the process), and
    `per_account` of them for the checks of one account (`check`'s `account_uri`, by its path).
    """

    def __init__(
        self,
        resolver: tuple[str, int] | None,
        identities: Sequence[str],
        timeout: float = 5.0,
        *,
        dnssec: DnssecMode = DnssecMode.OFF,
        in_flight: int = LOOKUPS_IN_FLIGHT,
        per_account: int = LOOKUPS_PER_ACCOUNT,
    ) -> None:
        self._resolver = validation_resolver(resolver, dnssec)
        self._dnssec = dnssec
        self._checking = dnssec is not DnssecMode.OFF  # read once per check
        self._stub = stub_for(resolver, self._resolver, ad=dnssec is not DnssecMode.OFF)
        self._identities = tuple(i.lower().rstrip(".") for i in identities)
        self._timeout = timeout
        self._slot_count = in_flight
        self._per_account = per_account
        self._in_flight: Slots | None = None

    async def relevant_records(self, name: str, account: str = "") -> tuple[str, list[CaaRecord]]:
        """(where found, records): the first non-empty CAA set climbing from `name`, its
        lookups in the slots of `account`.

        With no records anywhere, `(name, [])`. Raises a dns problem when a lookup fails.
        """
        base = _base_name(name)
        chain = _climb(base)
        loop = asyncio.get_running_loop()
        end = loop.time() + self._timeout
        found: list[tuple[list[CaaRecord], bool] | BaseException] = []
        for at in range(0, len(chain), CLIMB_BATCH):
            batch = chain[at : at + CLIMB_BATCH]
            if await self._climb_batch(batch, account, end, loop, found):
                return self._relevant(base, chain, found)
        if not self._checking:  # every set empty, no lookup failed
            return base, []
        return self._relevant(base, chain, found)

    async def _climb_batch(
        self,
        owners: list[str],
        account: str,
        end: float,
        loop: asyncio.AbstractEventLoop,
        found: list[tuple[list[CaaRecord], bool] | BaseException],
    ) -> bool:
        """Add to `found` the CAA sets at `owners` (one batch of the climb, in order) up
        to the first non-empty one or the first failure; whether the climb ends there.

        The batch's names are asked at once through the stub, in this coroutine (a task
        per name cost more than its question), while the process has a slot for it;
        None where the stub had no answer (a failure, an odd answer), which the resolver
        is then asked for, one name at a time: a name of 127 labels costs at most one
        socket at a time, never one per label (RFC 8659 §3 has the climb go on to the
        top-level domain; only how much of it is in flight at once is ours to bound)."""
        first: list[Reply[tuple[int, str, str]] | None] = [None] * len(owners)
        if self._stub is not None:
            slots = self._lookup_slots(loop)
            if not slots.take(account):
                try:
                    await slots.wait(account, end)
                except TimeoutError as exc:
                    found.append(exc)
                    return True
            try:
                attempt = min(STUB_ATTEMPT, end - loop.time())
                qnames = [owner + "." for owner in owners]
                first = await self._stub.ask_all(
                    qnames, dns.rdatatype.CAA, decode_caa, attempt, loop=loop
                )
            finally:
                slots.give(account)
        for owner, reply in zip(owners, first, strict=True):
            if reply is not None and _final(reply, owner):
                if reply.values:
                    found.append(([CaaRecord(*f) for f in reply.values], reply.authenticated))
                    return True
                found.append(([], reply.authenticated))
                continue
            try:  # a failure or a CNAME: this name goes the long way
                result = await self._lookup(owner, reply, account, end)
            except _LOOKUP_FAILURES as exc:
                found.append(exc)
                return True
            found.append(result)
            if result[0]:
                return True
        return False

    def _lookup_slots(self, loop: asyncio.AbstractEventLoop) -> Slots:
        """The slots for this checker's lookups in flight (`in_flight`), on the running
        loop (their waits are its futures)."""
        if self._in_flight is None or self._in_flight.loop is not loop:
            self._in_flight = Slots(self._slot_count, loop, self._per_account)
        return self._in_flight

    def _relevant(
        self,
        base: str,
        chain: list[str],
        results: list[tuple[list[CaaRecord], bool] | BaseException],
    ) -> tuple[str, list[CaaRecord]]:
        """The first non-empty set of `results` (in the order of `chain`), unless a
        lookup failed before it was reached."""
        for owner, result in zip(chain, results, strict=False):
            if isinstance(result, _LOOKUP_FAILURES):
                raise _lookup_failed(base, owner, result)
            if isinstance(result, BaseException):
                raise result
            records, secure = result
            # The answers the decision rests on: from `name` up to the set found.
            if self._checking:
                state = "secure (AD)" if secure else "not authenticated"
                log.info("DNSSEC: CAA %s answer is %s", owner, state)
                note_answers(secure)
            if records:
                return owner, records
        return base, []

    async def check(self, name: str, *, wildcard: bool, account_uri: str, method: str) -> None:
        """Raise a caa problem (403) unless CAA lets us issue for `name` (`*.name` if wildcard);
        a dns problem when CAA could not be looked up."""
        try:
            owner, records = await self.relevant_records(name, _slot_key(account_uri))
        except AcmeError as exc:
            ident = _identifier(_base_name(name), wildcard)
            raise AcmeError(dataclasses.replace(exc.problem, identifier=ident)) from None
        allowed, reason = caa_permits(
            records,
            identities=self._identities,
            wildcard=wildcard,
            account_uri=account_uri,
            method=method,
        )
        if allowed:
            log.debug("CAA permits %s: %s", name, reason)
            return
        shown = ", ".join(str(r) for r in records)
        raise _caa_problem(
            _base_name(name),
            wildcard,
            f"CAA record set for {owner} [{shown}] prevents issuance: {reason}",
        )

    async def _lookup(
        self, owner: str, first: Reply[tuple[int, str, str]] | None, account: str, end: float
    ) -> tuple[list[CaaRecord], bool]:
        """CAA at `owner`, CNAMEs followed, and whether every answer was authenticated.
        `first` is the stub's answer at `owner` (None: it had none, so the resolver is
        asked). `end` bounds the whole chain, not each hop, so answers that each come
        just in time cannot add up."""

        secure: list[bool] = []
        start = owner + "."

        async def ask(qname: str) -> tuple[tuple[tuple[int, str, str], ...] | None, str]:
            if qname == start and not secure:  # the first hop: the stub was asked already
                reply = first if first is not None else await self._resolve(qname, account, end)
            else:
                reply = await self._ask(qname, account, end)
            secure.append(reply.authenticated)
            return ((), qname) if reply.nxdomain else (reply.values, reply.canonical)

        async with asyncio.timeout_at(end):
            found = await follow_cnames(ask, start)
        return [CaaRecord(*fields) for fields in found], bool(secure) and all(secure)

    async def _ask(self, qname: str, account: str, end: float) -> Reply[tuple[int, str, str]]:
        """CAA at `qname`: the stub's answer, else the resolver's, by loop time `end`."""
        if self._stub is not None:
            attempt = min(STUB_ATTEMPT, end - asyncio.get_running_loop().time())
            reply = await self._stub.ask(qname, dns.rdatatype.CAA, decode_caa, attempt)
            if reply is not None:
                return reply
        return await self._resolve(qname, account, end)

    async def _resolve(self, qname: str, account: str, end: float) -> Reply[tuple[int, str, str]]:
        """CAA at `qname` through dnspython's resolver, by loop time `end`, in a slot of
        the checker's for `account` (waited for until `end` when none is free)."""
        loop = asyncio.get_running_loop()
        if end <= loop.time():
            raise TimeoutError
        slots = self._lookup_slots(loop)
        if not slots.take(account):
            await slots.wait(account, end)
        try:
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError
            return await self._resolved(qname, left)
        finally:
            slots.give(account)

    async def _resolved(self, qname: str, left: float) -> Reply[tuple[int, str, str]]:
        """CAA at `qname` through dnspython's resolver, within `left` seconds."""
        async with asyncio.timeout(left):
            try:
                answer = await self._resolver.resolve(
                    qname,
                    dns.rdatatype.CAA,
                    search=False,
                    raise_on_no_answer=False,
                    lifetime=left,
                    backend=CLOSING_BACKEND,
                )
            except dns.resolver.NXDOMAIN as exc:
                responses = exc.kwargs.get("responses") or {}
                ad = all(authenticated(r) for r in responses.values()) if responses else False
                return Reply(True, None, qname, ad)
        ad = authenticated(answer.response)
        if answer.rrset is not None:
            return Reply(False, tuple(_fields(rdata) for rdata in answer.rrset), qname, ad)
        return Reply(False, None, answer.canonical_name.to_text(), ad)


def _final(reply: Reply[tuple[int, str, str]], owner: str) -> bool:
    """Whether the stub's `reply` at `owner` ends the lookup there: NXDOMAIN, the
    records, or none at the name itself (no CNAME to follow)."""
    return reply.nxdomain or reply.values is not None or reply.canonical == owner + "."


def _base_name(name: str) -> str:
    return name.lower().removeprefix("*.").rstrip(".")


def _climb(name: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `b.c`, `c`]: the name and its ancestors, without the root."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def _fields(rdata: object) -> tuple[int, str, str]:
    assert isinstance(rdata, dns.rdtypes.ANY.CAA.CAA)
    tag = rdata.tag.decode("ascii", errors="replace")
    return rdata.flags, tag, rdata.value.decode("utf-8", errors="replace")


def _identifier(name: str, wildcard: bool) -> dict[str, str]:
    return {"type": "dns", "value": f"*.{name}" if wildcard else name}


def _caa_problem(name: str, wildcard: bool, detail: str) -> AcmeError:
    return problem(ProblemType.CAA, detail, status=403, identifier=_identifier(name, wildcard))


def _lookup_failed(name: str, owner: str, exc: BaseException) -> AcmeError:
    if isinstance(exc, dns.resolver.NoNameservers):
        # Also a validating resolver's answer for a bogus name (RFC 4035 §5.5).
        why = f"SERVFAIL or REFUSED{extended_errors(exc)}"
    elif isinstance(exc, TimeoutError | dns.exception.Timeout):
        why = "timeout"
    else:
        why = (str(exc) or type(exc).__name__).splitlines()[0][:200]
    log.info("CAA lookup failed for %s at %s: %s", name, owner, why)
    return problem(
        ProblemType.DNS,
        f"DNS problem: could not check CAA records for {name}: {why} looking up CAA at {owner}",
        identifier=_identifier(name, False),
    )
