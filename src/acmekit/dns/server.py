"""UDP and TCP listeners on asyncio: the thin edge around `DnsHandler.handle`.

Both listen on one address and port (RFC 7766: TCP is as much DNS as UDP). With port 0
the UDP socket is bound first and TCP is bound to the port the kernel chose, retrying
with a new port if that one is taken for TCP. TCP carries two-octet length-prefixed
messages (RFC 1035 §4.2.2), several per connection; an idle or slow connection is
closed after `idle_timeout` seconds, reading or writing (a client that asks and never
reads its answers holds its connection no longer than one that says nothing), and one
client (an IPv4 address, an IPv6 /64) holds at most `max_per_client` connections at
once (a further one is closed at once; RFC 7766 §6.2.2 asks servers to bound what a
client holds), and all clients together at most `max_connections`, kept below the
process's file-descriptor limit (RLIMIT_NOFILE) so that the HTTP API, the database and
the state file still get descriptors. At that bound a new connection takes the place of
the connection that has waited longest for a client's bytes, whether idle (waiting for
its next question) or stalled in the middle of one (its length read, its body not yet),
which is closed (RFC 7766 §6.2.2-§6.2.3: a server may close idle connections to free
resources): an attacker holding connections from many addresses, silent or sending a
length prefix and nothing more, then cannot shut out the clients that ask. A connection
whose question is being answered or whose answers are being written is never taken;
when every connection is so busy, the new one is closed at once. Once a message's length
has arrived its body must follow within `body_timeout` seconds (a few), not the idle
timeout. UDP
answers are rate limited per client network (acmekit.dns.rrl); TCP answers are not, as
a TCP client's address cannot be forged.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import struct
from collections import Counter, OrderedDict
from typing import Any, cast

from acmekit.dns.handler import DnsHandler, Transport, slipped
from acmekit.dns.rrl import ResponseRateLimiter, RrlSettings, Verdict
from acmekit.hostport import client_of

log = logging.getLogger(__name__)

BIND_ATTEMPTS = 20
IDLE_TIMEOUT = 30.0
BODY_TIMEOUT = 5.0  # for a message's body once its length arrived (RFC 7766 §6.2.3)
MAX_PER_CLIENT = 64  # TCP connections one client address may hold
MAX_CONNECTIONS = 1024  # TCP connections in all, at most half the descriptor limit


def descriptor_limit() -> int:
    """The process's soft limit on open file descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_bound(max_connections: int | None) -> int:
    """`max_connections`, or by default the lesser of MAX_CONNECTIONS and half the
    descriptor limit; a bound that leaves the process no descriptors is refused."""
    limit = descriptor_limit()
    if max_connections is None:
        return max(1, min(MAX_CONNECTIONS, limit // 2))
    if not 0 < max_connections < limit - 32:
        raise ValueError(
            f"the TCP connection bound {max_connections} must be above 0 and below "
            f"the file-descriptor limit less 32 ({limit - 32})"
        )
    return max_connections


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, handler: DnsHandler, limiter: ResponseRateLimiter | None) -> None:
        self.handler = handler
        self.limiter = limiter
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport does not subclass DatagramTransport on 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        verdict = Verdict.SEND if self.limiter is None else self.limiter.verdict(str(addr[0]))
        if verdict is Verdict.SEND:
            reply = self.handler.handle(data, Transport.UDP)
        elif verdict is Verdict.SLIP:
            reply = slipped(data)
        else:
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class DnsListener:
    """Serves one handler on UDP and TCP at one address until `close()`."""

    def __init__(
        self,
        handler: DnsHandler,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        rrl: RrlSettings | None = None,
        max_per_client: int = MAX_PER_CLIENT,
        max_connections: int | None = None,
    ) -> None:
        self.handler = handler
        self.max_per_client = max_per_client
        self.max_connections = connection_bound(max_connections)
        self._per_client: Counter[str] = Counter()
        self.limiter = ResponseRateLimiter(rrl) if rrl is not None and rrl.rate else None
        self.idle_timeout = idle_timeout
        self.body_timeout = min(body_timeout, idle_timeout)
        self.host = ""
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        # connections waiting for a client's bytes (the next message or the rest of
        # one), the one whose last bytes arrived longest ago first: those a new
        # connection may take the place of
        self._waiting: OrderedDict[asyncio.StreamWriter, None] = OrderedDict()

    async def start(self, host: str, port: int) -> int:
        """Bind UDP and TCP; returns the port (the chosen one when `port` is 0)."""
        attempts = BIND_ATTEMPTS if port == 0 else 1
        for attempt in range(attempts):
            udp_port = await self._bind_udp(host, port)
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, udp_port)
            except OSError:
                self._close_udp()
                if attempt == attempts - 1:
                    raise
                continue
            self.host, self.port = host, udp_port
            log.info("dns listening on %s port %d (udp+tcp)", host, udp_port)
            return udp_port
        raise OSError("could not bind udp and tcp to one port")

    async def _bind_udp(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self.handler, self.limiter), local_addr=(host, port)
            )
        except OSError as exc:  # say which address, as asyncio's TCP bind errors do
            # uvloop's error keeps the reason only in its cause
            cause = exc.__cause__
            why = cause if exc.errno is None and isinstance(cause, OSError) else exc
            raise OSError(why.errno, f"{why.strerror or why}: {(host, port)!r}") from None
        self._udp = transport
        bound: int = transport.get_extra_info("sockname")[1]
        return bound

    def _close_udp(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # an IPv6 client by its /64, as the HTTP listeners count it (RFC 6177)
        client = client_of(writer.get_extra_info("peername"))
        if not self._admit(client):
            writer.transport.abort()
            return
        self._per_client[client] += 1
        self._connections.add(writer)
        try:
            while True:
                self._waiting[writer] = None
                header = await asyncio.wait_for(reader.readexactly(2), self.idle_timeout)
                if writer not in self._waiting:
                    break  # closed to make room for a new connection
                self._waiting.move_to_end(writer)  # its last bytes arrived now
                (length,) = struct.unpack("!H", header)
                wire = await asyncio.wait_for(reader.readexactly(length), self.body_timeout)
                if writer not in self._waiting:
                    break
                del self._waiting[writer]  # answering now: not to be taken
                replies = self.handler.handle_stream(wire)
                if replies is None:
                    break
                for reply in replies:  # a zone transfer's messages, in order
                    writer.write(struct.pack("!H", len(reply)) + reply)
                await asyncio.wait_for(writer.drain(), self.idle_timeout)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            self._waiting.pop(writer, None)
            self._per_client[client] -= 1
            if not self._per_client[client]:
                del self._per_client[client]
            await self._close(writer)

    def _admit(self, client: str) -> bool:
        """May `client` open one more connection? Past the total bound, only by closing
        the connection that has waited longest for its client's bytes."""
        if self._per_client[client] >= self.max_per_client:
            log.debug("tcp: %s holds %d connections; closing another", client, self.max_per_client)
            return False
        if len(self._connections) >= self.max_connections and not self._close_idlest():
            log.debug("tcp: %d connections, all busy; closing the new one", len(self._connections))
            return False
        return True

    def _close_idlest(self) -> bool:
        """Close the connection that has waited longest for its client's bytes to make
        room for a new one; False when every connection is answering or writing."""
        if not self._waiting:
            return False
        writer, _ = self._waiting.popitem(last=False)
        self._connections.discard(writer)  # its task ends when it sees the close
        writer.transport.abort()
        return True

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Close after what is written is sent, waiting no longer than `idle_timeout`
        for a client that does not read it."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.idle_timeout)
        except TimeoutError:
            writer.transport.abort()
        except ConnectionError:
            pass

    async def close(self) -> None:
        self._close_udp()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None
