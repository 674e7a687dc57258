"""The MPIC perspective's listener (`acmekit server perspective`, anyone may connect before
the handshake asks for the CA's certificate) against slow and greedy clients, on real
sockets with real TLS: a handshake left unfinished is cut at its deadline, so is a
request head trickled after a finished one, one client address holds at most 64
connections (those still in their handshake counted), and the CA, keeping its
connection alive between requests, is served throughout."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from acmekit.server.ca import load_or_create_issuer
from acmekit.server.mpic.certs import ensure_client_credentials, issue_perspective_credentials
from acmekit.server.mpic.perspective import PerspectiveConfig, serve, server_context
from acmekit.server.mpic.quorum import Rir
from acmekit.server.mpic.remote import client_context
from acmekit.server.mpic.wire import PATH
from acmekit.server.validation import ValidationConfig
from acmekit.webguard import MAX_PER_CLIENT, ClientLimits, GuardedSite
from acmekit_testkit.slowclient import trickle_until_closed

SHORT = ClientLimits(head_timeout=1.0, handshake_timeout=1.0)
SMALL = ClientLimits(head_timeout=1.0, max_per_client=2, handshake_timeout=1.0)
LONG = ClientLimits(head_timeout=600.0, handshake_timeout=600.0)  # only the bound acts
NOT_JSON = {
    "type": "urn:ietf:params:acme:error:malformed",
    "detail": "corroboration request is not valid JSON",
    "status": 400,
}


@asynccontextmanager
async def perspective(
    tmp_path: Path, limits: ClientLimits
) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    """A running perspective on loopback (port 0) and the CA's client context for it."""
    now = datetime.now(UTC)
    issuer = load_or_create_issuer(tmp_path / "ca", now)
    files = issue_perspective_credentials(
        issuer, tmp_path / "ca" / "root.pem", tmp_path / "p", "p1", ["127.0.0.1"], now
    )
    cert, key = ensure_client_credentials(issuer, tmp_path / "ca", now)
    config = PerspectiveConfig(
        "p1", Rir.ARIN, files, ValidationConfig(dns_resolver=("127.0.0.1", 9)), limits=limits
    )
    lines: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(serve(config, "127.0.0.1", 0, lines.put_nowait))
    try:
        line = await asyncio.wait_for(lines.get(), 30)
        port = int(line.rsplit(":", 1)[1])
        yield port, client_context(tmp_path / "ca" / "root.pem", cert, key)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _closed(reader: asyncio.StreamReader, within: float = 20.0) -> bool:
    """True when the server closes (or resets) the connection within `within` seconds
    (far beyond the injected deadlines, far below asyncio's own 60 s)."""
    try:
        while await asyncio.wait_for(reader.read(4096), within):
            pass
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return True


async def _ask(port: int, ctx: ssl.SSLContext, body: bytes = b"x") -> tuple[int, Any]:
    """One request as the CA makes it; a body that is not JSON is answered 400, which
    needs the handshake with the CA's certificate and the request served."""
    async with aiohttp.ClientSession() as http:
        url = f"https://127.0.0.1:{port}{PATH}"
        async with http.post(url, data=body, ssl=ctx) as resp:
            return resp.status, await resp.json()


async def test_unfinished_handshakes_are_cut_and_their_places_given_back(
    tmp_path: Path,
) -> None:
    async with perspective(tmp_path, SMALL) as (port, ctx):
        for _ in range(3):  # more rounds than places: a place not given back would show
            stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            for _, writer in stalled:
                # a TLS record header announcing a ClientHello that never comes
                writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                await writer.drain()
            for reader, writer in stalled:
                assert await _closed(reader)
                writer.close()
        status, doc = 0, None
        for _ in range(40):
            try:
                status, doc = await _ask(port, ctx)
                break
            except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
                await asyncio.sleep(0.1)  # the server has yet to see the last close
        assert (status, doc) == (400, NOT_JSON)


async def test_a_deeply_nested_body_is_a_400_not_a_500(tmp_path: Path) -> None:
    """json.loads recurses per bracket; the perspective parses with the bounded loader."""
    async with perspective(tmp_path, SHORT) as (port, ctx):
        status, doc = await _ask(port, ctx, b"[" * 3_000 + b"]" * 3_000)
        assert status == 400
        assert doc["detail"] == "corroboration request is nested deeper than 32 levels"


async def test_a_silent_connection_is_cut(tmp_path: Path) -> None:
    async with perspective(tmp_path, SHORT) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed(reader)
        writer.close()


async def test_a_trickled_head_after_the_handshake_is_cut(tmp_path: Path) -> None:
    async with perspective(tmp_path, SHORT) as (port, ctx):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        assert await trickle_until_closed(
            reader, writer, f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()
        )
        writer.close()


async def test_one_address_holds_at_most_its_share(tmp_path: Path) -> None:
    async with perspective(tmp_path, LONG) as (port, ctx):
        # connections that never start their handshake count
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_PER_CLIENT)]
        await asyncio.sleep(0.2)  # let the server accept them all
        try:
            await asyncio.wait_for(_ask(port, ctx), 20)
        except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as exc:
            refused: BaseException | None = exc
        else:
            refused = None
        assert refused is not None  # the 65th is closed before TLS
        assert not any(r.at_eof() for r, _ in held)  # the 64 are kept
        _, first = held.pop()
        first.close()
        # one gone, one more may come: the CA is served again
        status, doc = 0, None
        for _ in range(40):
            try:
                status, doc = await _ask(port, ctx)
                break
            except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
                await asyncio.sleep(0.1)  # the server has yet to see the close
        assert (status, doc) == (400, NOT_JSON)
        for _, w in held:
            w.close()


async def test_the_ca_is_served_across_the_deadlines(tmp_path: Path) -> None:
    async with perspective(tmp_path, SHORT) as (port, ctx), aiohttp.ClientSession() as http:
        url = f"https://127.0.0.1:{port}{PATH}"
        for _ in range(3):  # one kept-alive connection, past both deadlines
            async with http.post(url, data=b"x", ssl=ctx) as resp:
                assert resp.status == 400
                assert (await resp.json())["detail"] == NOT_JSON["detail"]
            await asyncio.sleep(1.3)


async def test_a_tls_site_bound_by_host_and_port(tmp_path: Path) -> None:
    """GuardedSite with TLS binds its own socket when given no socket."""
    now = datetime.now(UTC)
    issuer = load_or_create_issuer(tmp_path / "ca", now)
    files = issue_perspective_credentials(
        issuer, tmp_path / "ca" / "root.pem", tmp_path / "p", "p1", ["127.0.0.1"], now
    )
    app = web.Application()
    app.router.add_get("/", _hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, ssl_context=server_context(files), limits=SMALL)
    await site.start()
    try:
        port = runner.addresses[0][1]
        cert, key = ensure_client_credentials(issuer, tmp_path / "ca", now)
        ctx = client_context(tmp_path / "ca" / "root.pem", cert, key)
        url = f"https://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as http, http.get(url, ssl=ctx) as resp:
            assert await resp.text() == "hello"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed(reader)  # a handshake never started is cut here too
        writer.close()
    finally:
        await runner.cleanup()
    assert not site.held.count and not site.handshakes


async def _hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")
