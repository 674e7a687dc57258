"""A lean one-question DNS stub for the common case, with dnspython's resolver behind it.

A validation asks a handful of plain questions (A, AAAA, TXT, CAA) of one recursive server.
dnspython's async `Resolver` spends most of its CPU on machinery those questions do not need
(rdata objects, rdatasets and their hashing, a full message with its authority section); so
`StubClient.ask` sends the question itself over UDP and reads the answer by hand. Each
question has a random ID; a connected socket carries at most `UDP_MAX_QUERIES` of them
(those in flight at once matched to their answers by ID) before a new socket, with a new
random source port, takes over (RFC 5452 §9.2).

It answers only what it fully understands: NXDOMAIN, or NOERROR with a well-formed message
whose question is ours, whose names are plain LDH labels and whose records of the asked type
decode (the rdata of records it does not use is skipped unread, where dnspython would
parse and might reject it). Everything else (truncation, SERVFAIL and other rcodes, a
timeout, a socket error, an odd name or record, a CNAME chain longer than dnspython allows)
returns `None`, and the caller asks dnspython's `Resolver` instead, which retries, falls
back to TCP and reports the failure as before. CNAMEs inside one answer are chased as
dnspython's `resolve_chaining` does; identical records are kept once, in the order given,
as dnspython's rdatasets do.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import re
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Final, Generic, NamedTuple, TypeVar

import dns.rdatatype
import dns.resolver

T = TypeVar("T")

MAX_CHAIN: Final = 16  # dnspython's limit on CNAMEs chased within one answer
UDP_MAX_QUERIES: Final = 16  # questions per socket (source port) before a new one
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_TYPE_CLASS = struct.Struct("!HH")
_QR, _TC, _RCODE, _OPCODE = 0x8000, 0x0200, 0x000F, 0x7800
_RD = 0x0100
_AD = 0x0020
_NXDOMAIN = 3
_IN = 1
_CNAME = int(dns.rdatatype.CNAME)
# A compression pointer to offset 12: the question's name, which an answer's records
# usually carry as their owner.
_AT_QUESTION: Final = b"\xc0\x0c"
_OCTETS: Final = tuple(bytes((n,)) for n in range(64))  # a label's length octet
_LDH = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")
# A name of the labels in _LDH, each of 1-63 characters, absolute ("a.b."); in wire form
# one octet longer than in text, so a text of at most 254 characters fits in 255 octets.
_ABSOLUTE_LDH = re.compile(r"(?:[A-Za-z0-9_*-]{1,63}\.)+")


class _Unusual(Exception):
    """Something this stub leaves to the full resolver."""


class Reply(NamedTuple, Generic[T]):
    """NXDOMAIN (`nxdomain`), the records found (`values`), or none of them at `canonical`.

    `values` is None when the final name of the CNAME chain has no records of the type;
    `canonical` is then that name (the question's own name, as given, when no CNAME led
    elsewhere), so the caller can ask again at the target. `authenticated` is the answer's
    AD bit: the resolver validated it as DNSSEC-secure (asked for with `ad`, RFC 6840 §5.7).
    (A named tuple: a frozen dataclass cost 0.4 µs more to make, once per question.)
    """

    nxdomain: bool
    values: tuple[T, ...] | None
    canonical: str
    authenticated: bool = False


# A named tuple made by `tuple.__new__` with every field, as its own `__new__` does
# after a Python-level call of its own (0.1 µs, per question and per lookup).
new_tuple = tuple.__new__


def stub_for(
    server: tuple[str, int] | None, resolver: dns.resolver.BaseResolver, *, ad: bool = False
) -> StubClient | None:
    """The stub for the configured server, else for the system resolver's first nameserver;
    with `ad` its questions set the AD bit."""
    if server is not None:
        candidates = [server]
    else:
        names = [n for n in resolver.nameservers if isinstance(n, str)]
        candidates = [(n, resolver.port) for n in names]
    for candidate in candidates:
        try:
            return StubClient(candidate, ad=ad)
        except ValueError:
            continue
    return None


_IDENTS: list[int] = []
os.register_at_fork(after_in_child=_IDENTS.clear)  # a child draws its own, never the parent's


def _random_ident() -> int:
    """16 random bits from the kernel's CSPRNG, read 256 IDs at a time (one getrandom
    call per ID cost more than the rest of building the question)."""
    if not _IDENTS:
        _IDENTS.extend(struct.unpack("!256H", os.urandom(512)))
    return _IDENTS.pop()


class _Channel(asyncio.DatagramProtocol):
    """One connected UDP socket and the questions waiting on it, by message ID.

    The kernel passes up only datagrams from the server the socket is connected to; an
    answer whose ID no question waits for is dropped. An ICMP error or the socket's end
    fails every question waiting, which then goes to the full resolver.

    Each question's wait ends at its own loop time (`wait_until`); one timer per socket,
    set for the earliest of them, ends the waits that are over and is set again for the
    next. It is not stopped when a question is answered, so the socket's next questions
    (ending later) need no timer of their own: it fires, finds their waits not over, and
    is set for the earliest. (A timer per question cost about 1.5 µs of CPU: a libuv
    timer made, started, stopped and freed.) It stops when the socket closes.
    """

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.asked = 0
        self.retired = False
        # loop time each question's wait ends, by ID, until the question is over
        # (math.inf once it has ended)
        self._ends: dict[int, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due = math.inf  # when the timer fires
        self._made: asyncio.BaseTransport | None = None  # what the loop handed over
        self._abandoned = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made = transport
        if self._abandoned:
            transport.close()

    def abandon(self) -> None:
        """Its opening was cancelled: close the socket now if the loop has handed it over,
        else as soon as it does."""
        self._abandoned = True
        if self._made is not None:
            self._made.close()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 2:
            future = self.waiting.pop(data[0] << 8 | data[1], None)
            if future is not None and not future.done():
                future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        self.retired = True  # the next question takes a new socket
        self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.retired = True
        self._stop_timer()
        self._fail(exc or ConnectionAbortedError("the stub's socket closed"))

    def _fail(self, exc: BaseException) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)

    def new_ident(self) -> int:
        """A random message ID (RFC 5452 §9.2) no question on this socket has, until
        that question is over (`done_with`): not only those waiting for their answer,
        since an answered question's `done_with` comes later and would otherwise end a
        new question that drew its ID meanwhile."""
        while (ident := _random_ident()) in self._ends or ident in self.waiting:
            pass
        return ident

    def wait_until(self, loop: asyncio.AbstractEventLoop, ident: int, end: float) -> None:
        """The question `ident` fails with TimeoutError at loop time `end`, unless
        answered or over before."""
        self._ends[ident] = end
        if end < self._due:
            if self._timer is not None:
                self._timer.cancel()
            self._due = end
            self._timer = loop.call_at(end, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: end the waits that are over (a timer may fire up to a millisecond
        early, libuv counting in milliseconds), and set it for the next."""
        self._timer, self._due = None, math.inf
        now = loop.time() + 0.001
        later = math.inf
        for ident, end in self._ends.items():
            if end <= now:
                self._ends[ident] = math.inf  # over; the ID stays taken until done_with
                future = self.waiting.get(ident)
                if future is not None and not future.done():
                    future.set_exception(TimeoutError())
            elif end < later:
                later = end
        if later < math.inf:
            self._due = later
            self._timer = loop.call_at(later, self._expire, loop)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._due = None, math.inf

    def retire(self) -> None:
        """Take no more questions; close once the last one waiting is over."""
        self.retired = True
        if not self.waiting:
            self._close()

    def done_with(self, ident: int) -> None:
        """The question `ident` is over; a retired socket closes with its last question."""
        self.waiting.pop(ident, None)
        self._ends.pop(ident, None)  # the timer stays: it serves the next questions too
        if self.retired and not self.waiting:
            self._close()

    def _close(self) -> None:
        self._stop_timer()
        self.transport.close()


class StubClient:
    """Asks one server at HOST, PORT; safe for concurrent use on one event loop.

    Questions share a connected UDP socket, at most `UDP_MAX_QUERIES` of them (c-ares'
    `udp_max_queries`), before a new socket, and so a new random source port, takes
    over: a fresh socket for every question cost about 30 µs of CPU more (socket,
    connect, epoll registration, close), and a fixed port would give an off-path
    attacker forging answers (RFC 5452 §9.2) a target that does not move.

    With `ad` each question sets the AD bit, so that a validating resolver reports in its
    answer whether it validated it (RFC 6840 §5.7). CD is never set: a validating resolver
    must not hand over answers whose signatures fail (`validation.dnssec`).
    """

    def __init__(self, server: tuple[str, int], *, ad: bool = False) -> None:
        self._flags = _RD | _AD if ad else _RD
        host, port = server  # raises ValueError unless HOST is an IP address
        self._family = (
            socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        )
        self._server = (host, port)
        self._channel: _Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()

    async def ask(
        self,
        qname: str,
        rdtype: int,
        decode: Callable[[bytes], T],
        wait: float,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Reply[T] | None:
        """One question; None when the full resolver should answer it instead.

        `qname` is absolute ("name."); `decode` turns one record's rdata into a value and
        raises ValueError when it cannot. (`ask_all` for one name, without its lists.)
        `loop`, the running loop, when the caller has it (on Python 3.11 looking it up
        is a getpid system call).
        """
        try:
            question = _question(qname, rdtype)
        except _Unusual:
            return None
        if loop is None:
            loop = asyncio.get_running_loop()
        expires = loop.time() + wait  # opening a socket counts against the wait too
        channel = self._ready(loop, 1)
        if channel is None:
            try:
                channel = await self._open(loop, 1)
            except OSError:
                return None
        ident = channel.new_ident()
        answer: asyncio.Future[bytes] = loop.create_future()
        channel.waiting[ident] = answer
        channel.wait_until(loop, ident, expires)
        try:
            channel.transport.sendto(_HEADER.pack(ident, self._flags, 1, 0, 0, 0) + question)
            return _read(await answer, question, qname, rdtype, decode)
        except (_Unusual, ValueError, OSError, TimeoutError):
            return None  # left to the resolver
        finally:
            if not answer.done():
                answer.cancel()
            elif not answer.cancelled():
                answer.exception()  # retrieved: an answer left unread is no error
            channel.done_with(ident)

    async def ask_all(
        self,
        qnames: Sequence[str],
        rdtype: int,
        decode: Callable[[bytes], T],
        wait: float,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> list[Reply[T] | None]:
        """`ask` for each name, the questions sent at once on one socket and all waited
        for within `wait`; the replies in the order of `qnames`. (For CAA's tree
        climbing: one coroutine, where a task per name cost more than a question.)"""
        questions: list[bytes | None] = []
        for qname in qnames:
            try:
                questions.append(_question(qname, rdtype))
            except _Unusual:
                questions.append(None)
        replies: list[Reply[T] | None] = [None] * len(questions)
        count = len(questions) - questions.count(None)
        if not count:
            return replies
        if loop is None:
            loop = asyncio.get_running_loop()
        expires = loop.time() + wait  # opening a socket counts against the wait too
        channel = self._ready(loop, count)
        if channel is None:
            try:
                channel = await self._open(loop, count)
            except OSError:
                return replies
        sent: list[tuple[int, int, bytes, asyncio.Future[bytes]]] = []
        for index, question in enumerate(questions):
            if question is not None:
                ident = channel.new_ident()
                answer: asyncio.Future[bytes] = loop.create_future()
                channel.waiting[ident] = answer
                channel.wait_until(loop, ident, expires)
                sent.append((index, ident, question, answer))
        try:
            for _, ident, question, _ in sent:
                channel.transport.sendto(_HEADER.pack(ident, self._flags, 1, 0, 0, 0) + question)
            for index, _, question, answer in sent:
                try:
                    data = await answer
                    replies[index] = _read(data, question, qnames[index], rdtype, decode)
                except (_Unusual, ValueError, OSError, TimeoutError):
                    pass  # None: left to the resolver
        finally:
            for _, ident, _, answer in sent:
                if answer.done() and not answer.cancelled():
                    answer.exception()  # retrieved: an answer left unread is no error
                answer.cancel()
                channel.done_with(ident)
        return replies

    def _ready(self, loop: asyncio.AbstractEventLoop, count: int) -> _Channel | None:
        """The socket for the next `count` questions, when the current one may serve
        them; else None, and `_open` makes a new one. A socket that would serve more than
        `UDP_MAX_QUERIES` is retired (it closes once its last answer is in); a batch
        larger than that gets a socket of its own."""
        if self._loop is not loop:  # sockets and locks belong to one event loop
            self._loop, self._channel, self._opening = loop, None, asyncio.Lock()
        channel = self._channel
        if channel is None or channel.retired:
            return None
        if channel.asked and channel.asked + count > UDP_MAX_QUERIES:
            channel.retire()
            return None
        return self._count(channel, count)

    async def _open(self, loop: asyncio.AbstractEventLoop, count: int) -> _Channel:
        """A new socket for the next `count` questions (unless another question opened
        one meanwhile)."""
        async with self._opening:  # questions asked meanwhile wait for this socket
            channel = self._channel
            if channel is None or channel.retired:
                channel = _Channel()
                try:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: channel, sock=self._connected_socket()
                    )
                except BaseException:
                    # uvloop (0.23) leaves the socket open, registered with its loop, when
                    # this wait is cancelled (asyncio closes it): a check's bound that
                    # fires here would leak a descriptor for good. The loop still hands
                    # the transport to the protocol, which then closes it.
                    channel.abandon()
                    raise
                channel.transport = transport
                self._channel = channel
        return self._count(channel, count)

    @staticmethod
    def _count(channel: _Channel, count: int) -> _Channel:
        channel.asked += count
        if channel.asked >= UDP_MAX_QUERIES:
            channel.retired = True  # done_with closes it after these questions
        return channel

    def _connected_socket(self) -> socket.socket:
        """A UDP socket connected to the server (the kernel picks a random source port,
        and passes up only the server's datagrams); made here, as the event loop's own
        path for an address cost half as much again."""
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self._server)
        except OSError:
            sock.close()
            raise
        return sock


def _question(qname: str, rdtype: int) -> bytes:
    """The question section for `qname` (absolute, LDH labels of 1-63 octets, 255 in all).
    Remembered (up to `_KEPT` of them): CAA's climbing asks the same parents, "test." and
    "example.test.", for every name below them."""
    wire = _QUESTIONS.get((qname, rdtype))
    if wire is not None:
        return wire
    if len(qname) > 254 or not _ABSOLUTE_LDH.fullmatch(qname):
        raise _Unusual
    built = bytearray()
    for label in qname.encode("ascii").split(b"."):  # the last, empty, is the root
        built += _OCTETS[len(label)]
        built += label
    built += _TYPE_CLASS.pack(rdtype, _IN)
    if len(_QUESTIONS) >= _KEPT:
        _QUESTIONS.clear()
    wire = _QUESTIONS[qname, rdtype] = bytes(built)
    return wire


_KEPT = 1024
_QUESTIONS: dict[tuple[str, int], bytes] = {}


def _read(
    data: bytes, question: bytes, qname: str, rdtype: int, decode: Callable[[bytes], T]
) -> Reply[T]:
    """The answer in `data` to our question; raises _Unusual for anything else."""
    size = len(data)
    if size < _HEADER.size:
        raise _Unusual
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if not flags & _QR or flags & (_TC | _OPCODE) or qdcount != 1:
        raise _Unusual
    rcode = flags & _RCODE
    if rcode and rcode != _NXDOMAIN:
        raise _Unusual
    end = 12 + len(question)
    ours = question[:-4]
    if (
        not data.startswith(question, 12)
        and (  # not as sent: in another letter case?
            data[end - 4 : end] != question[-4:] or data[12 : end - 4].lower() != ours.lower()
        )
    ):
        raise _Unusual
    lowered = ours.lower()  # our name, as `_name` returns names
    records: list[tuple[bytes, int, int, int]] = []  # owner (lowercase), type, start, end
    offset = end
    for index in range(ancount + nscount + arcount):
        if data[offset : offset + 2] == _AT_QUESTION:  # the usual owner: the question's name
            owner, offset = lowered, offset + 2
        else:
            owner, offset = _owner(data, offset, lowered, end - 4)
        if offset + _RR.size > size:
            raise _Unusual
        rtype, rclass, _, length = _RR.unpack_from(data, offset)
        offset += _RR.size
        if offset + length > size:
            raise _Unusual
        if index < ancount and rclass == _IN:
            records.append((owner, rtype, offset, offset + length))
        offset += length
    if offset != size:
        raise _Unusual
    ad = bool(flags & _AD)
    if rcode:  # NXDOMAIN
        if records:  # dnspython's resolver takes an answer with NXDOMAIN as a failure
            raise _Unusual
        return new_tuple(Reply, (True, None, qname, ad))
    current = lowered
    canonical = qname
    if not records:  # NODATA: nothing to look through
        return new_tuple(Reply, (False, None, canonical, ad))
    if len(records) == 1:  # the usual answer: one record, of the name and type asked
        owner, rtype, start, stop = records[0]
        if rtype == rdtype and owner == current:
            return new_tuple(Reply, (False, (decode(data[start:stop]),), canonical, ad))
    for _ in range(MAX_CHAIN):
        found = [data[s:e] for owner, t, s, e in records if t == rdtype and owner == current]
        if found:
            values = dict.fromkeys(found) if len(found) > 1 else found
            return new_tuple(Reply, (False, tuple(map(decode, values)), canonical, ad))
        cnames = [(s, e) for owner, t, s, e in records if t == _CNAME and owner == current]
        if not cnames:
            return new_tuple(Reply, (False, None, canonical, ad))
        start, stop = cnames[0]
        current, after = _name(data, start)
        if after != stop:
            raise _Unusual
        canonical = _text(current)
    raise _Unusual


def _owner(data: bytes, offset: int, lowered: bytes, stop: int) -> tuple[bytes, int]:
    """`_name` at `offset`, where a pointer to a label of the question's name (an SOA's
    owner, say) is that name's suffix without reading it again: our name, checked when
    it was asked, which the answer's question section (12 to `stop`) matches."""
    if offset >= len(data):  # the counts promised more records than came
        raise _Unusual
    first = data[offset]
    if first >= 0xC0 and offset + 1 < len(data):
        pointer = (first & 0x3F) << 8 | data[offset + 1]
        if 12 <= pointer < stop:
            at = 12
            while at < pointer:  # the question's labels, whose lengths are ours
                at += 1 + data[at]
            if at == pointer:
                return lowered[pointer - 12 :], offset + 2
    return _name(data, offset)


def _name(data: bytes, offset: int) -> tuple[bytes, int]:
    """The wire name at `offset` in lowercase wire form, and the offset after it.

    As dnspython requires, each compression pointer must point before the start of the
    part it was read from, so reading always ends.
    """
    out = bytearray()
    after = -1
    limit = offset
    while True:
        if offset >= len(data):
            raise _Unusual
        size = data[offset]
        if size >= 0xC0:
            if offset + 1 >= len(data):
                raise _Unusual
            pointer = (size & 0x3F) << 8 | data[offset + 1]
            if pointer >= limit:
                raise _Unusual
            if after < 0:
                after = offset + 2
            offset = limit = pointer
            continue
        if size > 63:
            raise _Unusual
        label = data[offset : offset + 1 + size]
        offset += 1 + size
        if len(label) != 1 + size or not _LDH.issuperset(label[1:]):
            raise _Unusual
        out += label
        if len(out) > 255:
            raise _Unusual
        if size == 0:
            break
    return bytes(out).lower(), offset if after < 0 else after


def _text(wire: bytes) -> str:
    """A wire name of LDH labels as absolute text."""
    labels = []
    offset = 0
    while wire[offset]:
        size = wire[offset]
        labels.append(wire[offset + 1 : offset + 1 + size].decode("ascii"))
        offset += 1 + size
    return ".".join(labels) + "."


def decode_a(rdata: bytes) -> str:
    """An A record as an address in text."""
    if len(rdata) != 4:
        raise ValueError("A record of the wrong length")
    return socket.inet_ntop(socket.AF_INET, rdata)


def decode_aaaa(rdata: bytes) -> str:
    """An AAAA record as an address in text."""
    if len(rdata) != 16:
        raise ValueError("AAAA record of the wrong length")
    return socket.inet_ntop(socket.AF_INET6, rdata)


def decode_txt(rdata: bytes) -> str:
    """A TXT record's strings joined, as `resolve._text` does for dnspython's rdata."""
    parts = []
    offset = 0
    while offset < len(rdata):
        size = rdata[offset]
        if offset + 1 + size > len(rdata):
            raise ValueError("TXT string overruns its record")
        parts.append(rdata[offset + 1 : offset + 1 + size])
        offset += 1 + size
    if not parts:
        raise ValueError("TXT record without strings")
    return b"".join(parts).decode("utf-8", errors="replace")


def decode_caa(rdata: bytes) -> tuple[int, str, str]:
    """A CAA record as flags, tag and value (RFC 8659 §4.1); the tag must be alphanumeric."""
    if len(rdata) < 2:
        raise ValueError("CAA record too short")
    size = rdata[1]
    tag = rdata[2 : 2 + size]
    if len(tag) != size or not tag.isalnum():
        raise ValueError("bad CAA tag")
    return rdata[0], tag.decode("ascii"), rdata[2 + size :].decode("utf-8", errors="replace")
