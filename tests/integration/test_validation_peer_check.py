"""The validation authority judges the peer it is connected to (getpeername), not only the
address it meant to reach, before it sends a byte: an address refused after the check
made before connecting (the world changed in between, as a DNS rebinding would make
it) ends http-01 and tls-alpn-01 in a `connection` problem, with nothing sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.protocol.tlsalpn import tlsalpn01_certificate
from acmekit.server.validation.http01 import Http01Policy, https_context, validate_http01
from acmekit.server.validation.reserved import AddressPolicy
from acmekit.server.validation.resolve import DnsClient, connect_checked
from acmekit.server.validation.tlsalpn01 import tlsalpn01_context, validate_tlsalpn01
from acmekit_testkit.ports import free_port
from acmekit_testkit.tcpstub import tcp_server
from acmekit_testkit.tlsalpn_responder import server_context

TARGET = "127.0.0.2"  # a loopback address of its own, so a policy can tell it apart
KEY_AUTH = "token.thumbprint"


@dataclass(frozen=True)
class ChangesItsMind(AddressPolicy):
    """Allows an address the first time it is asked, refuses it ever after."""

    asked: list[str] = field(default_factory=list)

    def refusal(self, text: str) -> str | None:
        self.asked.append(text)
        return None if len(self.asked) == 1 else f"{text} is refused now"


@dataclass
class Listener:
    port: int
    received: list[bytes]


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """A TCP server on TARGET that records whatever it is sent."""
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await reader.read(4096))
        except ConnectionError:  # closed with a reset: nothing was sent either
            received.append(b"")

    async with tcp_server(record, host=TARGET) as port:
        yield Listener(port, received)


def _dns(policy: AddressPolicy) -> DnsClient:
    # An IP identifier is its own address: the (loopback) resolver is never asked.
    return DnsClient(("127.0.0.1", free_port()), 2.0, policy)


async def _settled(listener: Listener) -> list[bytes]:
    for _ in range(100):
        if listener.received:
            break
        await asyncio.sleep(0.01)
    return listener.received


async def test_a_refused_peer_is_dropped_before_a_byte_is_sent(listener: Listener) -> None:
    only_one = AddressPolicy.allowing(["127.0.0.1/32"])
    with pytest.raises(AcmeError) as caught:
        await connect_checked(only_one, "peer.test", TARGET, listener.port)
    assert caught.value.problem.type == ProblemType.CONNECTION
    assert f"{TARGET} is a reserved address" in caught.value.problem.detail
    assert await _settled(listener) == [b""]  # connected, then closed unspoken to

    _, writer = await connect_checked(
        AddressPolicy.allowing(["127.0.0.0/8"]), "peer.test", TARGET, listener.port
    )
    writer.write(b"hello")
    await writer.drain()
    writer.close()
    for _ in range(100):
        if b"hello" in listener.received:
            break
        await asyncio.sleep(0.01)
    assert listener.received[-1] == b"hello"


async def test_http01_checks_the_peer_after_connecting(listener: Listener) -> None:
    policy = ChangesItsMind()
    http = Http01Policy(listener.port, 443, 1024, 0, 8192)
    with pytest.raises(AcmeError) as caught:
        await validate_http01(
            _dns(policy), https_context(), http, Identifier(IdentifierType.IP, TARGET),
            "token", KEY_AUTH, time.monotonic() + 5,
        )  # fmt: skip
    assert caught.value.problem.type == ProblemType.CONNECTION
    assert f"refusing the connection: {TARGET} is refused now" in caught.value.problem.detail
    assert policy.asked == [TARGET, TARGET]  # before connecting, and the peer after
    assert await _settled(listener) == [b""]  # no request was sent


async def test_tlsalpn01_checks_the_peer_before_the_handshake(listener: Listener) -> None:
    policy = ChangesItsMind()
    ident = Identifier(IdentifierType.IP, TARGET)
    with pytest.raises(AcmeError) as caught:
        await validate_tlsalpn01(
            _dns(policy), tlsalpn01_context(), listener.port, ident, KEY_AUTH,
            time.monotonic() + 5,
        )  # fmt: skip
    assert caught.value.problem.type == ProblemType.CONNECTION
    assert f"refusing the connection: {TARGET} is refused now" in caught.value.problem.detail
    assert await _settled(listener) == [b""]  # not even a ClientHello


async def test_tlsalpn01_still_passes_when_the_peer_is_allowed() -> None:
    ident = Identifier(IdentifierType.IP, TARGET)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = tlsalpn01_certificate(ident, KEY_AUTH, key)
    ctx = server_context(cert, key, ["acme-tls/1"])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async with tcp_server(answer, ssl_context=ctx, host=TARGET) as port:
        policy = AddressPolicy.allowing(["127.0.0.0/8"])
        await validate_tlsalpn01(
            _dns(policy), tlsalpn01_context(), port, ident, KEY_AUTH, time.monotonic() + 5
        )
