"""http-01 validation against real aiohttp servers on loopback, names resolved by a real DNS
server (pebble-challtestsrv answers every name with 127.0.0.1)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import dns.rcode
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server import validation
from acmekit.server.validation import ValidationConfig, Validator
from acmekit_testkit.acmekit_server import LOOPBACK_NETWORKS
from acmekit_testkit.challtestsrv import ChalltestsrvHandle, running_challtestsrv
from acmekit_testkit.ports import free_port
from acmekit_testkit.stubdns import stub_dns
from acmekit_testkit.tcpstub import tcp_server
from acmekit_testkit.tlsalpn_responder import server_context

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
PATH = "/.well-known/acme-challenge/" + TOKEN
NAME = Identifier(IdentifierType.DNS, "www.x.test")


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChalltestsrvHandle]:
    with running_challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as handle:
        yield handle


def config(dns: ChalltestsrvHandle | tuple[str, int], port: int, **kw: Any) -> ValidationConfig:
    resolver = dns if isinstance(dns, tuple) else ("127.0.0.1", dns.dns_port)
    return dataclasses.replace(
        ValidationConfig(allow_networks=LOOPBACK_NETWORKS, dns_resolver=resolver, http01_port=port),
        **kw,
    )


@asynccontextmanager
async def serve(
    routes: list[web.RouteDef], host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """An aiohttp.web app on a free port of `host`; yields the port."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    try:
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()


def text(body: str | bytes, status: int = 200) -> web.RouteDef:
    async def handler(_: web.Request) -> web.Response:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, content_type="text/plain")

    return web.get(PATH, handler)


def redirect(path: str, location: str) -> web.RouteDef:
    """Redirect `path` to `location`, in which '{port}' becomes this server's own port."""

    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(location.format(port=request.url.port))

    return web.get(path, handler)


async def run(cfg: ValidationConfig, ident: Identifier = NAME) -> None:
    validator = Validator(cfg)
    await validator.validate(ChallengeType.HTTP_01, ident, TOKEN, KEY_AUTH)


async def failure(cfg: ValidationConfig, ident: Identifier = NAME) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        await run(cfg, ident)
    assert info.value.problem.identifier == ident.to_json()
    return info.value


async def test_success_sends_host_header(challtestsrv: ChalltestsrvHandle) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers["Host"])
        return web.Response(text=KEY_AUTH + "\r\n\t ")

    async with serve([web.get(PATH, handler)]) as port:
        await run(config(challtestsrv, port))
    assert seen == [f"www.x.test:{port}"]


async def test_one_validator_many_validations(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([text(KEY_AUTH)]) as port:
        validator = Validator(config(challtestsrv, port))
        names = [Identifier(IdentifierType.DNS, f"n{i}.x.test") for i in range(5)]
        await asyncio.gather(
            *(validator.validate(ChallengeType.HTTP_01, n, TOKEN, KEY_AUTH) for n in names)
        )


async def test_ip_identifiers_v4_and_v6(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([text(KEY_AUTH)]) as port:
        await run(config(challtestsrv, port), Identifier(IdentifierType.IP, "127.0.0.1"))
    async with serve([text(KEY_AUTH)], host="::1") as port:
        await run(config(challtestsrv, port), Identifier(IdentifierType.IP, "::1"))


async def test_wrong_body(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([text(TOKEN + ".not-the-thumbprint")]) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.INCORRECT_RESPONSE
    assert f"http://www.x.test:{port}{PATH}" in err.problem.detail
    assert "not-the-thumbprint" in err.problem.detail


async def test_not_found_is_unauthorized(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([text("nope", status=404)]) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.UNAUTHORIZED
    assert "HTTP 404" in err.problem.detail


async def test_connection_refused(challtestsrv: ChalltestsrvHandle) -> None:
    port = free_port()
    err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.CONNECTION
    assert err.problem.detail == (f"fetching http://www.x.test:{port}{PATH}: connection refused")


async def test_redirect_to_configured_port_followed(challtestsrv: ChalltestsrvHandle) -> None:
    routes = [redirect(PATH, "http://other.x.test:{port}/moved"), text_at("/moved", KEY_AUTH)]
    async with serve(routes) as port:
        await run(config(challtestsrv, port))


async def test_redirect_to_https_followed_without_verifying(
    challtestsrv: ChalltestsrvHandle,
) -> None:
    async with serve([text_at("/secure", KEY_AUTH)], ssl_context=self_signed()) as tls_port:
        hop = [redirect(PATH, f"https://secure.x.test:{tls_port}/secure")]
        async with serve(hop) as port:
            await run(config(challtestsrv, port, https_port=tls_port))


async def test_redirect_to_other_port_refused(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([redirect(PATH, "http://www.x.test:8081/")]) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.CONNECTION
    assert "redirect to http://www.x.test:8081/ refused" in err.problem.detail


async def test_redirect_to_other_scheme_refused(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([redirect(PATH, "ftp://www.x.test/")]) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.CONNECTION
    assert "is not http or https" in err.problem.detail


async def test_redirect_loop_bounded(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([redirect(PATH, PATH)]) as port:
        err = await failure(config(challtestsrv, port, max_redirects=3))
    assert err.problem.type == ProblemType.CONNECTION
    assert "too many redirects (more than 3)" in err.problem.detail


async def test_body_over_bound_refused(challtestsrv: ChalltestsrvHandle) -> None:
    async with serve([text(KEY_AUTH + " " * 5000)]) as port:
        err = await failure(config(challtestsrv, port, max_body=4096))
    assert err.problem.type == ProblemType.INCORRECT_RESPONSE
    assert "longer than 4096 bytes" in err.problem.detail


async def test_silent_server_times_out(challtestsrv: ChalltestsrvHandle) -> None:
    async with tcp_server() as port:
        err = await failure(config(challtestsrv, port, timeout=1.0))
    assert err.problem.type == ProblemType.CONNECTION
    assert err.problem.detail == f"fetching http://www.x.test:{port}{PATH}: timeout"


async def test_nxdomain_is_dns() -> None:
    async with stub_dns(dns.rcode.NXDOMAIN) as resolver:
        err = await failure(config(resolver, free_port()))
    assert err.problem.type == ProblemType.DNS
    assert "NXDOMAIN looking up A for www.x.test" in err.problem.detail


async def test_servfail_is_dns(challtestsrv: ChalltestsrvHandle) -> None:
    await asyncio.to_thread(post, challtestsrv, "/set-servfail", {"host": "broken.x.test."})
    ident = Identifier(IdentifierType.DNS, "broken.x.test")
    err = await failure(config(challtestsrv, free_port()), ident)
    assert err.problem.type == ProblemType.DNS
    assert "SERVFAIL looking up A for broken.x.test" in err.problem.detail


async def test_silent_resolver_is_dns() -> None:
    async with stub_dns(None) as resolver:
        err = await failure(config(resolver, free_port(), timeout=1.0))
    assert err.problem.type == ProblemType.DNS
    assert "timed out" in err.problem.detail


async def test_a_lookup_cut_off_by_the_last_bound_is_still_dns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a busy machine the validation's last bound can fire before the lookup's own
    # timeout does; what was running then is what failed.
    monkeypatch.setattr(validation, "_GRACE", -0.6)
    async with stub_dns(None) as resolver:
        err = await failure(config(resolver, free_port(), timeout=1.0))
    assert err.problem.type == ProblemType.DNS
    assert "query timed out looking up A for " in err.problem.detail


def post(handle: ChalltestsrvHandle, path: str, doc: dict[str, str]) -> None:
    """A management call challtestsrv's handle has no method for."""
    req = urllib.request.Request(handle.management_url + path, data=json.dumps(doc).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def text_at(path: str, body: str) -> web.RouteDef:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=body)

    return web.get(path, handler)


def self_signed() -> ssl.SSLContext:
    """A server context with a throwaway self-signed certificate (nobody trusts it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "untrusted.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return server_context(cert, key, ())


def raw_answer(data: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """A TCP handler that reads the request's head, writes `data` and closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        writer.close()

    return handler


async def test_chunked_body_accepted(challtestsrv: ChalltestsrvHandle) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (KEY_AUTH[:10], KEY_AUTH[10:30], KEY_AUTH[30:]):
            await resp.write(part.encode())
        await resp.write_eof()
        return resp

    async with serve([web.get(PATH, handler)]) as port:
        await run(config(challtestsrv, port))


async def test_body_ended_by_close_accepted(challtestsrv: ChalltestsrvHandle) -> None:
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + KEY_AUTH.encode()
    async with tcp_server(raw_answer(answer)) as port:
        await run(config(challtestsrv, port))


async def test_malformed_response_is_connection(challtestsrv: ChalltestsrvHandle) -> None:
    async with tcp_server(raw_answer(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.CONNECTION
    assert "malformed HTTP response" in err.problem.detail


async def test_closed_before_an_answer_is_connection(challtestsrv: ChalltestsrvHandle) -> None:
    async with tcp_server(raw_answer(b"")) as port:
        err = await failure(config(challtestsrv, port))
    assert err.problem.type == ProblemType.CONNECTION
    assert err.problem.detail.endswith("the server closed the connection")


async def test_request_names_host_port_and_closes(challtestsrv: ChalltestsrvHandle) -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(KEY_AUTH))
        writer.write(KEY_AUTH.encode())
        await writer.drain()

    async with tcp_server(handler) as port:
        await run(config(challtestsrv, port))
    head = heads[0].decode().lower()
    assert head.startswith(f"get {PATH.lower()} http/1.1\r\n")
    assert f"host: www.x.test:{port}\r\n" in head
    assert "connection: close\r\n" in head


# --- what a validation target may not make the CA do (docs/security.md)


async def test_redirect_to_a_reserved_address_is_refused_before_connecting(
    challtestsrv: ChalltestsrvHandle,
) -> None:
    # Allowed: 127.0.0.1 only. 127.0.0.2 is loopback too, but not allowed: a redirect there
    # must fail without the CA ever connecting to it.
    seen: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        writer.close()

    async with serve([redirect(PATH, "http://127.0.0.2:{port}/elsewhere")]) as port:
        target = await asyncio.start_server(count, "127.0.0.2", port)
        try:
            err = await failure(config(challtestsrv, port, allow_networks=("127.0.0.1/32",)))
        finally:
            target.close()
            await target.wait_closed()
    assert err.problem.type == ProblemType.CONNECTION
    assert "127.0.0.2 is a reserved address" in err.problem.detail
    assert seen == []


async def test_endless_headers_are_refused_without_reading_them(
    challtestsrv: ChalltestsrvHandle,
) -> None:
    # 64 MiB of one header: more than loopback's socket buffers can hold, so the sender
    # sees its connection dropped when the CA stops reading.
    total = 64 * 1024 * 1024
    sent: list[int] = []
    dropped: list[OSError] = []
    done = asyncio.Event()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"a" * 65536
        writer.write(b"HTTP/1.1 200 OK\r\nX-Filler: ")
        try:
            for _ in range(total // len(chunk)):
                writer.write(chunk)
                await writer.drain()
                sent.append(len(chunk))
        except OSError as exc:
            dropped.append(exc)
        finally:
            done.set()

    async with tcp_server(flood) as port:
        err = await failure(config(challtestsrv, port))
        async with asyncio.timeout(30):
            await done.wait()
    assert err.problem.type == ProblemType.CONNECTION
    assert "headers are longer than 8192 bytes" in err.problem.detail
    assert dropped
    assert sum(sent) < total


async def test_headers_within_the_bound_pass(challtestsrv: ChalltestsrvHandle) -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * 7000 + b"\r\nContent-Length: "
    answer = head + str(len(KEY_AUTH)).encode() + b"\r\n\r\n" + KEY_AUTH.encode()
    async with tcp_server(raw_answer(answer)) as port:
        await run(config(challtestsrv, port))
