"""Validation targets and resolvers that fail by saying nothing, on real loopback sockets.

An http-01 target that accepts and never answers, a tls-alpn-01 target that accepts and
never finishes the handshake, a resolver that drops every packet (dns-01, http-01's
address lookup, CAA) and one that answers SERVFAIL for CAA: each ends in its problem
(RFC 8555 §6.7) once the timeout passes: `connection` for a silent target, `dns` for a
silent or failing resolver, and a CAA lookup that fails is never taken for "no CAA".

While one of these hangs, a validation started after it on the same Validator (same
resolver, same port) finishes first: the order of events is asserted, not their times.
The only time bound is a generous one (three timeouts), so a loaded machine cannot fail it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import cast

import dns.message
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol.challenges import dns01_txt_value
from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.protocol.tlsalpn import tlsalpn01_certificate
from acmekit.server.caa import CaaChecker
from acmekit.server.validation import ValidationConfig, Validator
from acmekit_testkit.acmekit_server import LOOPBACK_NETWORKS
from acmekit_testkit.stubdns import ScriptedResolver, scripted_resolver, stub_dns
from acmekit_testkit.tcpstub import hold, tcp_server
from acmekit_testkit.tlsalpn_responder import server_context

TIMEOUT = 1.0
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
US = "ca.test"
ACCOUNT = "https://ca.test/acme/acct/1"
GOOD = Identifier(IdentifierType.DNS, "good.x.test")
HUNG = Identifier(IdentifierType.DNS, "hung.x.test")  # served at 127.0.0.2
SILENT = Identifier(IdentifierType.DNS, "silent.x.test")  # the resolver drops its questions
FAILING = Identifier(IdentifierType.DNS, "failing.x.test")  # SERVFAIL for its CAA


@asynccontextmanager
async def resolver() -> AsyncIterator[tuple[tuple[str, int], ScriptedResolver]]:
    """GOOD and HUNG resolve, SILENT's questions are dropped, FAILING's CAA is SERVFAIL."""
    async with scripted_resolver(dns01_txt_value(KEY_AUTH)) as served:
        yield served


def validator(at: tuple[str, int], port: int = 1) -> Validator:
    return Validator(
        ValidationConfig(
            allow_networks=LOOPBACK_NETWORKS,
            dns_resolver=at,
            http01_port=port,
            tlsalpn01_port=port,
            timeout=TIMEOUT,
        )
    )


async def failure(call: Awaitable[None], within: float = 3 * TIMEOUT) -> AcmeError:
    """The AcmeError `call` ends in; it must end within `within` seconds."""
    async with asyncio.timeout(within):
        with pytest.raises(AcmeError) as info:
            await call
    return info.value


@asynccontextmanager
async def silent_target() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A TCP server at 127.0.0.2 that accepts and never says anything; yields its port
    and an event set once a connection was accepted."""
    accepted = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await hold(reader, writer)

    async with tcp_server(handler, host="127.0.0.2") as port:
        yield port, accepted


async def serve_key_auth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    body = KEY_AUTH.encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


def tlsalpn01_context() -> ssl.SSLContext:
    """A TLS server context presenting GOOD's tls-alpn-01 certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    return server_context(tlsalpn01_certificate(GOOD, KEY_AUTH, key), key, ["acme-tls/1"])


# The challenges of RFC 8555 and RFC 8737; the account-bound drafts' (dns-account-01,
# dns-persist-01) need an account context and are tested with it
# (tests/component/test_persist_account_challenges.py).
RFC_CHALLENGES = [ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01]


def good_target(challenge: ChallengeType, port: int = 0) -> AbstractAsyncContextManager[int]:
    """Where GOOD's challenge is met, at 127.0.0.1 (dns-01 needs none: http will do)."""
    if challenge == ChallengeType.TLS_ALPN_01:
        return tcp_server(ssl_context=tlsalpn01_context(), port=port)
    return tcp_server(serve_key_auth, port=port)


@asynccontextmanager
async def hung_and_good(challenge: ChallengeType) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """silent_target at 127.0.0.2 and good_target at 127.0.0.1, on one port (the config
    has one); another port if something else holds that one at 127.0.0.1."""
    for attempt in range(10):
        async with AsyncExitStack() as stack:
            port, accepted = await stack.enter_async_context(silent_target())
            try:
                await stack.enter_async_context(good_target(challenge, port))
            except OSError:
                if attempt == 9:
                    raise
                continue
            yield port, accepted
            return


# --- a target that accepts and never answers


@pytest.mark.parametrize(
    ("challenge", "where"),
    [
        (ChallengeType.HTTP_01, "fetching http://hung.x.test:{port}/.well-known/acme-challenge/"),
        (ChallengeType.TLS_ALPN_01, "tls-alpn-01 for hung.x.test at 127.0.0.2:{port}"),
    ],
)
async def test_target_that_never_answers_is_connection_and_does_not_hold_others(
    challenge: ChallengeType, where: str
) -> None:
    """http-01: the request is never answered; tls-alpn-01: the ClientHello never is."""
    async with resolver() as (at, _), hung_and_good(challenge) as (port, accepted):
        va = validator(at, port)
        hung = asyncio.create_task(va.validate(challenge, HUNG, TOKEN, KEY_AUTH))
        await accepted.wait()
        await va.validate(challenge, GOOD, TOKEN, KEY_AUTH)
        assert not hung.done()
        err = await failure(hung)
    assert err.problem.type == ProblemType.CONNECTION
    assert err.problem.detail.startswith(where.format(port=port))
    assert err.problem.detail.endswith(": timeout")
    assert err.problem.identifier == HUNG.to_json()


# --- a resolver that drops every packet


@pytest.mark.parametrize("challenge", RFC_CHALLENGES)
async def test_resolver_dropping_every_packet_is_dns(challenge: ChallengeType) -> None:
    async with stub_dns(None) as at:
        err = await failure(validator(at).validate(challenge, GOOD, TOKEN, KEY_AUTH))
    assert err.problem.type == ProblemType.DNS
    assert "timed out" in err.problem.detail or "timeout" in err.problem.detail
    assert err.problem.identifier == GOOD.to_json()


async def test_caa_lookup_through_a_resolver_dropping_every_packet_fails_closed() -> None:
    async with stub_dns(None) as at:
        caa = CaaChecker(at, (US,), timeout=TIMEOUT)
        err = await failure(
            caa.check("a.x.test", wildcard=False, account_uri=ACCOUNT, method="dns-01")
        )
    assert err.problem.type == ProblemType.DNS
    assert "could not check CAA records for a.x.test" in err.problem.detail
    assert err.problem.identifier == {"type": "dns", "value": "a.x.test"}


@pytest.mark.parametrize("challenge", RFC_CHALLENGES)
async def test_silent_lookups_do_not_hold_other_validations(challenge: ChallengeType) -> None:
    async with resolver() as (at, dns_server), good_target(challenge) as port:
        va = validator(at, port)
        hung = asyncio.create_task(va.validate(challenge, SILENT, TOKEN, KEY_AUTH))
        await dns_server.dropped.wait()
        await va.validate(challenge, GOOD, TOKEN, KEY_AUTH)
        assert not hung.done()
        err = await failure(hung)
    assert err.problem.type == ProblemType.DNS
    assert err.problem.identifier == SILENT.to_json()


async def test_silent_caa_lookups_do_not_hold_other_caa_checks() -> None:
    async with resolver() as (at, dns_server):
        caa = CaaChecker(at, (US,), timeout=TIMEOUT)
        hung = asyncio.create_task(
            caa.check(SILENT.value, wildcard=False, account_uri=ACCOUNT, method="dns-01")
        )
        await dns_server.dropped.wait()
        await caa.check(GOOD.value, wildcard=False, account_uri=ACCOUNT, method="dns-01")
        assert not hung.done()
        err = await failure(hung)
    assert err.problem.type == ProblemType.DNS
    assert "could not check CAA records for silent.x.test" in err.problem.detail


# --- a resolver that answers SERVFAIL for CAA


@pytest.mark.parametrize("wildcard", [False, True])
async def test_caa_servfail_is_never_taken_for_no_caa(wildcard: bool) -> None:
    async with resolver() as (at, dns_server):
        caa = CaaChecker(at, (US,), timeout=TIMEOUT)
        await caa.check(GOOD.value, wildcard=wildcard, account_uri=ACCOUNT, method="dns-01")
        err = await failure(
            caa.check(FAILING.value, wildcard=wildcard, account_uri=ACCOUNT, method="dns-01")
        )
    assert err.problem.type == ProblemType.DNS
    assert "SERVFAIL or REFUSED looking up CAA at failing.x.test" in err.problem.detail
    value = f"*.{FAILING.value}" if wildcard else FAILING.value
    assert err.problem.identifier == {"type": "dns", "value": value}
    assert "failing.x.test." in dns_server.asked


class _SlowCnames(asyncio.DatagramProtocol):
    """Answers CAA at hopN.slow.test with only a CNAME to hopN+1, each after `delay`
    seconds: every answer comes within a lookup's timeout, the chain never ends. Other
    questions get an empty answer at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text()
        reply = dns.message.make_response(query)
        if not name.startswith("hop"):
            self._send(reply, addr)
            return
        hop = int(name.split(".")[0].removeprefix("hop"))
        target = f"hop{hop + 1}.slow.test."
        reply.answer.append(dns.rrset.from_text(question.name, 0, "IN", "CNAME", target))
        asyncio.get_running_loop().call_later(self.delay, self._send, reply, addr)

    def _send(self, reply: dns.message.Message, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply.to_wire(), addr)


async def test_a_slow_cname_chain_is_bounded_by_one_caa_timeout() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _SlowCnames(0.6 * TIMEOUT), local_addr=("127.0.0.1", 0)
    )
    try:
        caa = CaaChecker(transport.get_extra_info("sockname"), (US,), timeout=TIMEOUT)
        err = await failure(
            caa.check("hop0.slow.test", wildcard=False, account_uri=ACCOUNT, method="dns-01")
        )
    finally:
        transport.close()
    assert err.problem.type == ProblemType.DNS
    assert "timeout looking up CAA at hop0.slow.test" in err.problem.detail
