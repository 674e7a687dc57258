"""The client's transport against a hostile server on loopback: an endless body, a
declared huge one, and a small gzip body that inflates to 256 MiB are refused
before they fill memory; an ordinary answer still arrives."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from acmekit.client.transport import MAX_RESPONSE, AiohttpTransport, TransportError

# 256 MiB of zeros, deflated: a quarter of a megabyte on the wire
_BOMB_SIZE = 1 << 28


def _gzip_bomb() -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    out = [squeeze.compress(block) for _ in range(_BOMB_SIZE >> 20)]
    return b"".join(out) + squeeze.flush()


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    chunk = b" " * (256 * 1024)
    try:
        for _ in range(256):  # 64 MiB, if the client kept reading
            await resp.write(chunk)
    except (ConnectionResetError, ConnectionError):
        pass
    return resp


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _gzip_bomb()


@pytest.fixture
async def hostile(bomb: bytes) -> AsyncIterator[str]:
    async def declared(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_RESPONSE + 1), content_type="application/json")

    async def gzip(_: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def ok(request: web.Request) -> web.Response:
        # the client asks for no content coding
        return web.json_response({"accept-encoding": request.headers.get("Accept-Encoding")})

    app = web.Application()
    app.router.add_get("/endless", _endless)
    app.router.add_get("/declared", declared)
    app.router.add_get("/gzip", gzip)
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "said"),
    [("/endless", "larger than"), ("/declared", "larger than"), ("/gzip", "'gzip' body")],
)
async def test_a_body_too_large_is_refused(hostile: str, path: str, said: str) -> None:
    async with AiohttpTransport() as transport:
        with pytest.raises(TransportError, match=said):
            await transport.request("GET", hostile + path, headers={}, body=None)


async def test_an_ordinary_answer_arrives(hostile: str) -> None:
    async with AiohttpTransport() as transport:
        resp = await transport.request("GET", f"{hostile}/ok", headers={}, body=None)
    assert resp.status == 200
    assert resp.body == b'{"accept-encoding": "identity"}'
