"""Which addresses the validation authority asks for and connects to: A first, AAAA only
when there is no A address or every A address refused, for http-01 and tls-alpn-01.

A small DNS server on loopback serves fixed A and AAAA records and records every question,
so the tests see what was asked as well as what was reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.protocol.tlsalpn import tlsalpn01_certificate
from acmekit.server.validation import ValidationConfig, Validator
from acmekit_testkit.acmekit_server import LOOPBACK_NETWORKS
from acmekit_testkit.ports import free_port
from acmekit_testkit.tcpstub import tcp_server
from acmekit_testkit.tlsalpn_responder import server_context

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
PATH = "/.well-known/acme-challenge/" + TOKEN
NAME = Identifier(IdentifierType.DNS, "dual.x.test")


class _Records(asyncio.DatagramProtocol):
    """Answers A and AAAA at every name from fixed lists (NODATA when empty)."""

    def __init__(self, a: list[str], aaaa: list[str]) -> None:
        self.addresses = {dns.rdatatype.A: a, dns.rdatatype.AAAA: aaaa}
        self.asked: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.asked.append(dns.rdatatype.to_text(question.rdtype))
        reply = dns.message.make_response(query)
        found = self.addresses.get(question.rdtype, [])
        if found:
            reply.answer.append(
                dns.rrset.from_text(question.name, 0, "IN", question.rdtype, *found)
            )
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


@asynccontextmanager
async def records(a: list[str], aaaa: list[str]) -> AsyncIterator[tuple[tuple[str, int], _Records]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Records(a, aaaa), local_addr=("127.0.0.1", 0)
    )
    try:
        yield ("127.0.0.1", transport.get_extra_info("sockname")[1]), protocol
    finally:
        transport.close()


@asynccontextmanager
async def serve_key_auth(host: str) -> AsyncIterator[int]:
    """The key authorization over http on a free port of `host`; yields the port."""

    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=KEY_AUTH)

    app = web.Application()
    app.add_routes([web.get(PATH, handler)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def http01(resolver: tuple[str, int], port: int) -> None:
    validator = Validator(
        ValidationConfig(
            allow_networks=LOOPBACK_NETWORKS, dns_resolver=resolver, http01_port=port, timeout=5
        )
    )
    await validator.validate(ChallengeType.HTTP_01, NAME, TOKEN, KEY_AUTH)


async def test_a_found_means_aaaa_is_not_asked() -> None:
    async with serve_key_auth("127.0.0.1") as port, records(["127.0.0.1"], ["::1"]) as (at, dns):
        await http01(at, port)
    assert dns.asked == ["A"]


async def test_aaaa_asked_when_there_is_no_a() -> None:
    async with serve_key_auth("::1") as port, records([], ["::1"]) as (at, dns):
        await http01(at, port)
    assert dns.asked == ["A", "AAAA"]


async def test_aaaa_tried_when_every_a_address_refuses() -> None:
    # Nothing listens on 127.0.0.1 or 127.0.0.2 at the port; ::1 answers.
    async with (
        serve_key_auth("::1") as port,
        records(["127.0.0.1", "127.0.0.2"], ["::1"]) as (at, dns),
    ):
        await http01(at, port)
    assert dns.asked == ["A", "AAAA"]


async def test_refused_without_aaaa_reports_the_connection_failure() -> None:
    port = free_port()
    async with records(["127.0.0.1"], []) as (at, dns):
        with pytest.raises(AcmeError) as info:
            await http01(at, port)
    assert info.value.problem.type == ProblemType.CONNECTION
    assert "connect" in info.value.problem.detail.lower()
    assert dns.asked == ["A", "AAAA"]


async def test_no_addresses_at_all_is_dns() -> None:
    async with records([], []) as (at, _):
        with pytest.raises(AcmeError) as info:
            await http01(at, free_port())
    assert info.value.problem.type == ProblemType.DNS
    assert "no valid A or AAAA records found for dual.x.test" in info.value.problem.detail


async def test_tlsalpn01_tries_aaaa_when_every_a_address_refuses() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ctx = server_context(tlsalpn01_certificate(NAME, KEY_AUTH, key), key, ["acme-tls/1"])
    async with (
        tcp_server(ssl_context=ctx, host="::1") as port,
        records(["127.0.0.1"], ["::1"]) as (at, dns),
    ):
        validator = Validator(
            ValidationConfig(
                allow_networks=LOOPBACK_NETWORKS, dns_resolver=at, tlsalpn01_port=port, timeout=5
            )
        )
        await validator.validate(ChallengeType.TLS_ALPN_01, NAME, TOKEN, KEY_AUTH)
    assert dns.asked == ["A", "AAAA"]


async def test_tlsalpn01_asks_only_a_when_an_a_address_answers() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ctx = server_context(tlsalpn01_certificate(NAME, KEY_AUTH, key), key, ["acme-tls/1"])
    async with tcp_server(ssl_context=ctx) as port, records(["127.0.0.1"], ["::1"]) as (at, dns):
        validator = Validator(
            ValidationConfig(
                allow_networks=LOOPBACK_NETWORKS, dns_resolver=at, tlsalpn01_port=port, timeout=5
            )
        )
        await validator.validate(ChallengeType.TLS_ALPN_01, NAME, TOKEN, KEY_AUTH)
    assert dns.asked == ["A"]


# --- reserved addresses (docs/security.md): refused before any connection


@asynccontextmanager
async def counting_listener(host: str, port: int) -> AsyncIterator[list[str]]:
    """A TCP listener on `host`:`port` that records each connection it accepts."""
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(host)
        writer.close()

    server = await asyncio.start_server(accept, host, port)
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


def only(network: str, **kw: object) -> Validator:
    """A validator allowed to reach `network` and no other reserved address."""
    return Validator(ValidationConfig(allow_networks=(network,), timeout=5, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("challenge", [ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01])
async def test_a_name_at_a_reserved_address_is_never_connected_to(
    challenge: ChallengeType,
) -> None:
    # 127.0.0.2 is loopback like the allowed 127.0.0.1/32, but not in the allowed list.
    port = free_port()
    async with (
        counting_listener("127.0.0.2", port) as seen,
        records(["127.0.0.2"], []) as (at, _),
    ):
        validator = only("127.0.0.1/32", dns_resolver=at, http01_port=port, tlsalpn01_port=port)
        with pytest.raises(AcmeError) as info:
            await validator.validate(challenge, NAME, TOKEN, KEY_AUTH)
    assert info.value.problem.type == ProblemType.CONNECTION
    assert "127.0.0.2 is a reserved address (127.0.0.0/8, loopback" in info.value.problem.detail
    assert seen == []


async def test_reserved_addresses_are_passed_over_for_allowed_ones() -> None:
    async with (
        serve_key_auth("127.0.0.1") as port,
        records(["10.0.0.1", "127.0.0.1"], []) as (
            at,
            _,
        ),
    ):
        await only("127.0.0.1/32", dns_resolver=at, http01_port=port).validate(
            ChallengeType.HTTP_01, NAME, TOKEN, KEY_AUTH
        )


async def test_by_default_even_loopback_is_refused() -> None:
    async with serve_key_auth("127.0.0.1") as port, records(["127.0.0.1"], []) as (at, _):
        validator = Validator(ValidationConfig(dns_resolver=at, http01_port=port, timeout=5))
        with pytest.raises(AcmeError) as info:
            await validator.validate(ChallengeType.HTTP_01, NAME, TOKEN, KEY_AUTH)
    assert "127.0.0.1 is a reserved address" in info.value.problem.detail
