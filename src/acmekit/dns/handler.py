"""One DNS message in, one DNS message (or nothing) out: the server's sans-I/O core.

`DnsHandler.handle(wire)` never raises and never touches a socket:

- Fewer than 12 octets, or a message with QR set (a response), is dropped: answering
  either could feed a loop.
- A message larger, or with more records, than its opcode can need gets FORMERR from
  its header alone, before any parse (`acmekit.dns.limits`), so that one message costs
  a bounded amount of the event loop's time.
- Anything dnspython cannot parse (truncated, wrong counts, compression loops, labels
  over 63 octets, trailing junk) gets FORMERR built from the raw header (RFC 1035 §4.1.1).
- A TSIG-signed message is checked against our keyring (RFC 8945 §5.2): unknown key or
  algorithm is NOTAUTH/BADKEY, a wrong MAC NOTAUTH/BADSIG, each with an unsigned TSIG; a
  MAC truncated below half the hash (or 10 octets) FORMERR, a longer truncated one
  NOTAUTH/BADTRUNC; a clock skew beyond the fudge (the request's, but never more than
  300 s: `acmekit.dns.tsig.MAX_FUDGE`), or a signed UPDATE whose MAC was
  accepted already within its time window (a replay, §5.2.3), NOTAUTH/BADTIME. Those
  two are signed, BADTIME with our time in Other Data (§5.3.2; `acmekit.dns.tsig`). A
  good signature makes the response signed.
- EDNS version above 0 gets BADVERS (RFC 6891 §6.1.3). Our UDP payload is 1232 octets;
  an answer that does not fit the requester's limit (512 without EDNS) is sent empty with
  TC set, so the client retries over TCP (RFC 1035 §4.2.1, RFC 7766).
- QUERY is answered from the record store; UPDATE (RFC 2136) is accepted only when signed
  with a key that may update (else REFUSED, RFC 2136 §3.3: without keys, from the
  header alone) and applied by `acmekit.dns.update`; other opcodes get NOTIMP. The
  keys that may update are those named in `allow_update` or, when none are named,
  every key not named in `allow_transfer`: the transfer key sits in every
  secondary's configuration, and whoever runs a secondary must not be able to
  publish challenge records with it.
- AXFR and IXFR (`handle_stream`, TCP only) are answered by `acmekit.dns.xfr` when signed
  with a key named in `allow_transfer`, else REFUSED; over UDP they are REFUSED.

Unsigned queries are answered from a cache of whole responses (`acmekit.dns.cache`,
bounded by octets), emptied whenever the store changes. The key is the message after
its ID with the question name in lower case (so transport, flags, question and EDNS
options must match); a query whose tail holds anything but an OPT with at most a cookie
and a client subnet (an unknown option, padding, a TSIG) is answered but not cached, as
such a tail could be varied freely to make many keys for one answer. A hit is the cached
response with the query's ID and the query's own spelling of the name spliced in at
offset 12, where every compressed owner name points, so DNS 0x20 case randomization
still gets its case back. A repeated question then costs a dictionary lookup instead of
dnspython's parse and render. A question missing the cache is first offered to
`acmekit.dns.fastpath`, which answers the common shape (one question for a stored name,
NODATA or NXDOMAIN, plain or with a bare EDNS OPT) from pre-rendered wire bytes; what
it declines takes dnspython's path.

The only impurity is dnspython's TSIG time check, which reads the wall clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from enum import StrEnum

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update

from acmekit.dns import fastpath, limits
from acmekit.dns.cache import CACHE_BYTES, ResponseCache
from acmekit.dns.store import RecordStore
from acmekit.dns.tsig import (
    Keyring,
    TimesSigned,
    append_error_tsig,
    append_signed_error_tsig,
    outside_window,
    truncated_mac_matches,
    truncation_error,
)
from acmekit.dns.update import apply_update
from acmekit.dns.xfr import transfer_messages

log = logging.getLogger(__name__)

HEADER_LEN = 12
UDP_PAYLOAD = 1232
PLAIN_UDP_LIMIT = 512
TCP_LIMIT = fastpath.TCP_LIMIT  # a DNS message over TCP (RFC 1035 §4.2.2)
CACHE_TAIL = 80  # octets after the question: an OPT with a cookie and a client subnet
_OPT_HEAD = b"\x00\x00\x29"  # root owner, type OPT
_KEYED_OPTIONS = frozenset({8, 10})  # EDNS Client Subnet (RFC 7871), COOKIE (RFC 7873)
_REFUSED_QTYPES = frozenset(
    {dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.MAILA, dns.rdatatype.MAILB}
)
_TSIG_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (dns.tsig.BadSignature, dns.rcode.BADSIG),
    (dns.tsig.BadAlgorithm, dns.rcode.BADKEY),
    (dns.tsig.BadKey, dns.rcode.BADKEY),
)


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"


def formerr(wire: bytes, rcode: int = dns.rcode.FORMERR) -> bytes:
    """FORMERR (or `rcode`) for a message we could not or would not parse: its ID,
    opcode and RD, no sections."""
    flags = 0x80 | (wire[2] & 0x79)
    return wire[:2] + bytes([flags, rcode]) + bytes(8)


def slipped(wire: bytes) -> bytes | None:
    """Response rate limiting's truncated answer (acmekit.dns.rrl): the query's ID,
    opcode, RD and question, with QR and TC set and no records, so a resolver retries
    over TCP. None for a response or a query that is not one plain question."""
    if len(wire) < HEADER_LEN or wire[2] & 0x80:
        return None
    found = _question_end(wire)
    end = found + 4 if found is not None else len(wire) + 1  # name, type, class
    if end > len(wire):
        return None
    flags = 0x80 | (wire[2] & 0x79) | 0x02
    return wire[:2] + bytes([flags, 0]) + b"\x00\x01" + bytes(6) + wire[HEADER_LEN:end]


CacheKey = tuple[Transport, bytes]


def _is_transfer(wire: bytes) -> bool:
    """Is `wire` a query with one question of type AXFR or IXFR? (a cheap look)"""
    found = _question_end(wire)
    if found is None or len(wire) < found + 2:
        return False
    qtype = int.from_bytes(wire[found : found + 2], "big")
    return qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)


def _question_end(wire: bytes) -> int | None:
    """The end of the question name of a one-question message with a plain name."""
    if wire[4:6] != b"\x00\x01":
        return None
    i = HEADER_LEN
    while i < len(wire):
        length = wire[i]
        if length == 0:
            return i + 1
        if length > 63:
            return None
        i += length + 1
    return None


def update_keys(
    keyring: Keyring, allow_transfer: frozenset[dns.name.Name], named: Iterable[dns.name.Name]
) -> frozenset[dns.name.Name]:
    """The keys that may UPDATE: those `named` (`--allow-update`), or when none are, every
    key that is not for transfers only."""
    chosen = frozenset(named)
    unknown = [k.to_text() for k in chosen if k not in keyring]
    if unknown:
        raise ValueError(f"--allow-update names keys not given with --tsig-key: {unknown}")
    return chosen or frozenset(keyring) - allow_transfer


def _cache_key(wire: bytes, transport: Transport) -> tuple[CacheKey, int] | None:
    """(key, end of the question name) for a one-question message with a plain name
    and a tail `_keyed_tail` accepts."""
    end = _question_end(wire)
    if end is None or not _keyed_tail(wire[end + 4 :]):
        return None
    return (transport, wire[2:HEADER_LEN] + wire[HEADER_LEN:end].lower() + wire[end:]), end


def _keyed_tail(tail: bytes) -> bool:
    """Is what follows the question nothing, or one OPT (at most CACHE_TAIL octets)
    holding only the small options resolvers send with every question, a cookie and a
    client subnet? Any other option (an unknown one, padding) could be made to vary
    freely, each variant a key of its own for the same answer, so a query carrying one
    is answered but not cached."""
    if not tail:
        return True
    if len(tail) > CACHE_TAIL or len(tail) < 11 or tail[:3] != _OPT_HEAD:
        return False
    if 11 + (tail[9] << 8 | tail[10]) != len(tail):
        return False
    i = 11
    while i + 4 <= len(tail):
        if (tail[i] << 8 | tail[i + 1]) not in _KEYED_OPTIONS:
            return False
        i += 4 + (tail[i + 2] << 8 | tail[i + 3])
    return i == len(tail)


class DnsHandler:
    """Answers messages from a RecordStore; `keyring` holds the TSIG keys for UPDATE."""

    def __init__(
        self,
        store: RecordStore,
        keyring: Keyring | None = None,
        *,
        udp_payload: int = UDP_PAYLOAD,
        allow_transfer: Iterable[dns.name.Name] = (),
        allow_update: Iterable[dns.name.Name] = (),
        fast_path: bool = True,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.store = store
        self.fast_path = fast_path
        self.keyring: Keyring = dict(keyring or {})
        self.allow_transfer = frozenset(allow_transfer)
        unknown = [k.to_text() for k in self.allow_transfer if k not in self.keyring]
        if unknown:
            raise ValueError(f"--allow-transfer names keys not given with --tsig-key: {unknown}")
        self.allow_update = update_keys(self.keyring, self.allow_transfer, allow_update)
        self.udp_payload = udp_payload
        self.times_signed = TimesSigned()
        # called after a signed UPDATE that changed nothing (a failed prerequisite, a
        # deletion of nothing): the state file keeps its MAC all the same
        self.on_unchanged_update: list[Callable[[], None]] = []
        self.cache: ResponseCache[CacheKey] = ResponseCache(cache_bytes)
        self._cache_generation = store.generation

    def handle(self, wire: bytes, transport: Transport = Transport.UDP) -> bytes | None:
        """The response to `wire`, or None when it must be dropped. Never raises."""
        if len(wire) < HEADER_LEN or wire[2] & 0x80:
            return None
        beyond = limits.excess(wire)  # before any parse: bounded work (acmekit.dns.limits)
        if beyond is not None:
            return formerr(wire, beyond)
        if wire[2] & 0x78 == dns.opcode.UPDATE << 3 and not self.keyring:
            return formerr(wire, dns.rcode.REFUSED)  # none may update: no need to parse
        if self._cache_generation != self.store.generation:
            self.cache.clear()
            self._cache_generation = self.store.generation
        key = _cache_key(wire, transport)
        cached = self.cache.get(key[0]) if key is not None else None
        if key is not None and cached is not None:
            end = key[1]
            return wire[:2] + cached[:10] + wire[HEADER_LEN:end] + cached[end - 2 :]
        fast = self._fast(wire, transport) if self.fast_path else None
        if fast is not None:
            return fast
        try:
            message = dns.message.from_wire(wire, keyring=False)
        except Exception:  # every parse failure is the peer's doing: FORMERR
            return formerr(wire)
        try:
            if message.had_tsig:
                verified = self._verify(wire, message)
                if isinstance(verified, bytes):
                    return verified
                message = verified
            reply = self._to_wire(self._respond(message), message, transport)
            self._remember(wire, message, transport, reply)
            return reply
        except Exception:
            log.exception("internal error answering message id %d", message.id)
            return wire[:2] + bytes([0x80 | (wire[2] & 0x79), dns.rcode.SERVFAIL]) + bytes(8)

    def _fast(self, wire: bytes, transport: Transport) -> bytes | None:
        try:
            return fastpath.answer(self.store, wire, transport is Transport.TCP, self.udp_payload)
        except Exception:  # a bug there must not cost the answer: the general path gives it
            log.exception("internal error in the fast path, id %d", wire[0] << 8 | wire[1])
            return None

    def handle_stream(self, wire: bytes) -> list[bytes] | None:
        """The response messages to one message received over TCP: several for a zone
        transfer, else `handle`'s one. Never raises."""
        # Only a query (QR clear, opcode QUERY) asks for a transfer (RFC 5936 §2.2);
        # anything else goes to `handle`, which drops responses and answers the opcode.
        if not _is_transfer(wire) or wire[2] & 0xF8 != 0 or limits.excess(wire) is not None:
            reply = self.handle(wire, Transport.TCP)
            return None if reply is None else [reply]
        try:
            message = dns.message.from_wire(wire, keyring=False)
        except Exception:
            return [formerr(wire)]
        try:
            return self._transfer(wire, message)
        except Exception:
            log.exception("internal error answering transfer id %d", message.id)
            return [wire[:2] + bytes([0x80 | (wire[2] & 0x79), dns.rcode.SERVFAIL]) + bytes(8)]

    def _transfer(self, wire: bytes, message: dns.message.Message) -> list[bytes]:
        if message.had_tsig:
            verified = self._verify(wire, message)
            if isinstance(verified, bytes):
                return [verified]
            message = verified
        if not message.had_tsig or message.keyname not in self.allow_transfer:
            log.info("zone transfer refused: %s", message.keyname or "unsigned")
            response = dns.message.make_response(message)
            response.set_rcode(dns.rcode.REFUSED)
            return [response.to_wire()]
        out: list[bytes] = []
        ctx = None
        for response in transfer_messages(self.store, message):
            # Over TCP a message may be 65,535 octets whatever the query's OPT advertises
            # for UDP (RFC 6891 §7): dnspython would otherwise cap it at that payload.
            out.append(response.to_wire(multi=True, tsig_ctx=ctx, max_size=TCP_LIMIT))
            ctx = response.tsig_ctx
        log.info(
            "zone transfer %s of %s to key %s: %d messages",
            dns.rdatatype.to_text(message.question[0].rdtype),
            message.question[0].name, message.keyname, len(out),
        )  # fmt: skip
        return out

    def _remember(
        self, wire: bytes, message: dns.message.Message, transport: Transport, reply: bytes
    ) -> None:
        key = _cache_key(wire, transport)
        if key is None or message.had_tsig or message.opcode() != dns.opcode.QUERY:
            return
        self.cache.put(key[0], reply[2:], len(key[0][1]))

    def _verify(self, wire: bytes, message: dns.message.Message) -> dns.message.Message | bytes:
        assert message.keyname is not None and message.tsig is not None
        key = self.keyring.get(message.keyname)
        if key is None:
            log.info("TSIG key unknown: %s", message.keyname)
            return self._tsig_error(message, dns.rcode.BADKEY)
        request = message.tsig[0]
        short = truncation_error(key, request)
        if short == dns.rcode.FORMERR:
            return formerr(wire)
        if short is not None:
            if not truncated_mac_matches(wire, key, request):
                return self._tsig_error(message, dns.rcode.BADSIG)
            return self._signed_tsig_error(message, key, short)
        try:
            verified = dns.message.from_wire(wire, keyring=key)
        except dns.tsig.BadTime:  # the MAC is good (dnspython checks it first)
            log.info("TSIG time outside the fudge for key %s", key.name)
            return self._signed_tsig_error(message, key, dns.rcode.BADTIME)
        except Exception as exc:
            for kind, error in _TSIG_ERRORS:
                if isinstance(exc, kind):
                    log.info("TSIG check failed for key %s: %s", key.name, kind.__name__)
                    return self._tsig_error(message, error)
            return formerr(wire)
        if outside_window(request.time_signed, request.fudge, int(time.time())):
            # dnspython honoured the request's own fudge, up to 65,535 s; we honour ours
            log.info("TSIG time outside our fudge for key %s", key.name)
            return self._signed_tsig_error(message, key, dns.rcode.BADTIME)
        replayed = verified.opcode() == dns.opcode.UPDATE and not self.times_signed.accept(
            key.name, request.time_signed, request.fudge, request.mac
        )
        if replayed:
            log.info("UPDATE replayed for key %s: BADTIME", key.name)
            return self._signed_tsig_error(message, key, dns.rcode.BADTIME)
        return verified

    def _tsig_error(self, message: dns.message.Message, error: int) -> bytes:
        response = dns.message.make_response(message, our_payload=self.udp_payload)
        response.set_rcode(dns.rcode.NOTAUTH)
        assert message.tsig is not None and message.keyname is not None
        return append_error_tsig(response.to_wire(), message.keyname, message.tsig[0], error)

    def _signed_tsig_error(
        self, message: dns.message.Message, key: dns.tsig.Key, error: int
    ) -> bytes:
        response = dns.message.make_response(message, our_payload=self.udp_payload)
        response.set_rcode(dns.rcode.NOTAUTH)
        assert message.tsig is not None
        now = int(time.time()) if error == dns.rcode.BADTIME else None
        return append_signed_error_tsig(response.to_wire(), key, message.tsig[0], error, now)

    def _respond(self, message: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(message, our_payload=self.udp_payload)
        if message.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        elif message.opcode() == dns.opcode.QUERY:
            self._query(message, response)
        elif message.opcode() == dns.opcode.UPDATE:
            self._update(message, response)
        else:
            response.set_rcode(dns.rcode.NOTIMP)
        return response

    def _query(self, message: dns.message.Message, response: dns.message.Message) -> None:
        if len(message.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return
        question = message.question[0]
        if question.rdclass != dns.rdataclass.IN or question.rdtype in _REFUSED_QTYPES:
            response.set_rcode(dns.rcode.REFUSED)
            return
        result = self.store.resolve(question.name, question.rdtype)
        response.set_rcode(result.rcode)
        if result.authoritative:
            response.flags |= dns.flags.AA
        response.answer = list(result.answer)
        response.authority = list(result.authority)
        response.additional = list(result.additional)

    def _update(self, message: dns.message.Message, response: dns.message.Message) -> None:
        if not message.had_tsig or message.keyname not in self.allow_update:
            log.info("UPDATE refused: %s", message.keyname or "unsigned")
            response.set_rcode(dns.rcode.REFUSED)
            return
        assert isinstance(message, dns.update.UpdateMessage)
        generation = self.store.generation
        response.set_rcode(apply_update(self.store, message))
        if self.store.generation == generation:
            # Its MAC was taken, yet no change saves it (`on_change`): a replay after a
            # restart, once what it requires or deletes is there, must still be refused.
            for callback in self.on_unchanged_update:
                callback()

    def _to_wire(
        self, response: dns.message.Message, query: dns.message.Message, transport: Transport
    ) -> bytes:
        if transport is Transport.TCP:
            limit = TCP_LIMIT
        elif query.edns >= 0:
            limit = max(PLAIN_UDP_LIMIT, min(query.payload, self.udp_payload))
        else:
            limit = PLAIN_UDP_LIMIT
        try:
            wire: bytes = response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            wire = response.to_wire(max_size=limit)
        return wire
