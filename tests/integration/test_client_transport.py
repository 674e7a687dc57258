"""AiohttpTransport against a real loopback server: headers, HEAD, and failures."""

from __future__ import annotations

import pytest
from aiohttp import web

from acmekit.client import AiohttpTransport, TransportError
from acmekit_testkit.ports import free_port


async def _handler(request: web.Request) -> web.Response:
    resp = web.Response(status=201, body=request.method.encode() + await request.read())
    resp.headers.add("Link", '<https://ca.test/a>;rel="alternate"')
    resp.headers.add("Link", '</b>;rel="alternate"')
    resp.headers["Replay-Nonce"] = "n1"
    return resp


async def test_requests_and_headers_over_a_real_socket() -> None:
    app = web.Application()
    app.router.add_route("*", "/x", _handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with AiohttpTransport() as transport:
            url = f"http://127.0.0.1:{port}/x"
            resp = await transport.request("POST", url, headers={}, body=b"!")
            head = await transport.request("HEAD", url, headers={}, body=None)
    finally:
        await runner.cleanup()
    assert (resp.status, resp.body) == (201, b"POST!")
    assert resp.header("replay-nonce") == "n1"
    assert resp.links("alternate") == ("https://ca.test/a", f"http://127.0.0.1:{port}/b")
    assert (head.status, head.body) == (201, b"")


async def test_connection_refused_is_a_transport_error() -> None:
    async with AiohttpTransport() as transport:
        with pytest.raises(TransportError, match="GET"):
            await transport.request(
                "GET", f"http://127.0.0.1:{free_port()}/", headers={}, body=None
            )
