"""tls-alpn-01 validation against real TLS responders on loopback (RFC 8737, RFC 8738)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.protocol.tlsalpn import tlsalpn01_certificate
from acmekit.server.validation import ValidationConfig, Validator
from acmekit_testkit.acmekit_server import LOOPBACK_NETWORKS
from acmekit_testkit.challtestsrv import ChalltestsrvHandle, running_challtestsrv
from acmekit_testkit.ports import free_port
from acmekit_testkit.tcpstub import tcp_server
from acmekit_testkit.tlsalpn_responder import server_context, tlsalpn_responder

TOKEN = "Ux2XeIsVHqM2nWQJZ8tYqGfv5xWwWk0WWnbuFrYMC9Q"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
NAME = Identifier(IdentifierType.DNS, "alpn.x.test")
KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChalltestsrvHandle]:
    with running_challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as handle:
        yield handle


def config(handle: ChalltestsrvHandle, port: int, timeout: float = 10.0) -> ValidationConfig:
    resolver = ("127.0.0.1", handle.dns_port)
    return ValidationConfig(
        allow_networks=LOOPBACK_NETWORKS,
        dns_resolver=resolver,
        tlsalpn01_port=port,
        timeout=timeout,
    )


async def run(cfg: ValidationConfig, ident: Identifier = NAME, key_auth: str = KEY_AUTH) -> None:
    validator = Validator(cfg)
    await validator.validate(ChallengeType.TLS_ALPN_01, ident, TOKEN, key_auth)


async def failure(
    cfg: ValidationConfig, ident: Identifier = NAME, key_auth: str = KEY_AUTH
) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        await run(cfg, ident, key_auth)
    assert info.value.problem.identifier == ident.to_json()
    return info.value


async def test_success(challtestsrv: ChalltestsrvHandle) -> None:
    cert = tlsalpn01_certificate(NAME, KEY_AUTH, KEY)
    async with tlsalpn_responder(cert, KEY) as port:
        await run(config(challtestsrv, port))


async def test_ip_identifier_sends_reverse_name(challtestsrv: ChalltestsrvHandle) -> None:
    ident = Identifier(IdentifierType.IP, "127.0.0.1")
    ctx = server_context(tlsalpn01_certificate(ident, KEY_AUTH, KEY), KEY, ["acme-tls/1"])
    names: list[str | None] = []
    ctx.sni_callback = lambda _obj, name, _ctx: names.append(name)
    async with tcp_server(ssl_context=ctx) as port:
        await run(config(challtestsrv, port), ident)
    assert names == ["1.0.0.127.in-addr.arpa"]


async def test_wrong_digest_is_incorrect_response(challtestsrv: ChalltestsrvHandle) -> None:
    cert = tlsalpn01_certificate(NAME, TOKEN + ".someone-else", KEY)
    async with tlsalpn_responder(cert, KEY) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.INCORRECT_RESPONSE
    assert err.problem.detail == (
        f"tls-alpn-01 for alpn.x.test at 127.0.0.1:{port}: "
        "the certificate's acmeIdentifier does not match the key authorization"
    )


async def test_wrong_name_is_incorrect_response(challtestsrv: ChalltestsrvHandle) -> None:
    cert = tlsalpn01_certificate(Identifier(IdentifierType.DNS, "other.x.test"), KEY_AUTH, KEY)
    async with tlsalpn_responder(cert, KEY) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.INCORRECT_RESPONSE
    assert "must be exactly alpn.x.test, not [DNSName:other.x.test]" in err.problem.detail


async def test_no_alpn_is_tls(challtestsrv: ChalltestsrvHandle) -> None:
    cert = tlsalpn01_certificate(NAME, KEY_AUTH, KEY)
    async with tlsalpn_responder(cert, KEY, alpn=()) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.TLS
    assert "did not negotiate ALPN 'acme-tls/1' (no protocol)" in err.problem.detail


async def test_other_alpn_is_tls(challtestsrv: ChalltestsrvHandle) -> None:
    cert = tlsalpn01_certificate(NAME, KEY_AUTH, KEY)
    async with tlsalpn_responder(cert, KEY, alpn=("http/1.1",)) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.TLS


async def test_not_tls_is_tls(challtestsrv: ChalltestsrvHandle) -> None:
    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with tcp_server(plain_http) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.TLS
    assert "TLS handshake failed" in err.problem.detail


async def test_connection_refused(challtestsrv: ChalltestsrvHandle) -> None:
    port = free_port()
    err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.CONNECTION
    assert err.problem.detail == (
        f"tls-alpn-01 for alpn.x.test: no address accepted a connection on port {port}"
    )


async def test_silent_server_times_out(challtestsrv: ChalltestsrvHandle) -> None:
    async with tcp_server() as port:
        err = await failure(config(challtestsrv, port, timeout=1.0))
    assert err.problem.type == ProblemType.CONNECTION
    assert err.problem.detail == f"tls-alpn-01 for alpn.x.test at 127.0.0.1:{port}: timeout"


async def test_wildcard_refused(challtestsrv: ChalltestsrvHandle) -> None:
    err = await failure(
        config(challtestsrv, free_port()), Identifier(IdentifierType.DNS, "*.x.test")
    )
    assert err.problem.type == ProblemType.MALFORMED
