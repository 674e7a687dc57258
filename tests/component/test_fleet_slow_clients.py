"""The fleet's listeners (the http-01 responder faces the internet) against slow and
greedy clients, on real sockets: a request head trickled line by line is cut off at
its deadline, one client address holds at most its share of connections, and an
ordinary client, keeping its connection alive between requests, is served throughout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from acmekit.webguard import GuardedSite
from acmekit_testkit.waits import until

PATH = "/.well-known/acme-challenge/tok"


async def _answer(_: web.Request) -> web.Response:
    return web.Response(text="key-authorization")


@pytest.fixture
async def site() -> AsyncIterator[tuple[GuardedSite, int]]:
    app = web.Application()
    app.router.add_get(PATH, _answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    guarded = GuardedSite(runner, "127.0.0.1", 0, head_timeout=1.0, max_per_client=4)
    await guarded.start()
    yield guarded, runner.addresses[0][1]
    await runner.cleanup()


async def test_a_trickled_head_is_cut_off(site: tuple[GuardedSite, int]) -> None:
    guarded, port = site
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: a.test\r\n".encode())
    closed = False
    for _ in range(400):  # a header line every 50 ms, for up to 20 s
        await asyncio.sleep(0.05)
        if reader.at_eof() or writer.is_closing():
            closed = True
            break
        try:
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
        except ConnectionError:
            closed = True
            break
    assert closed
    writer.close()
    await until(lambda: not guarded.held.count)


async def test_a_client_holds_at_most_its_share(site: tuple[GuardedSite, int]) -> None:
    guarded, port = site
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    await until(lambda: guarded.held.count["127.0.0.1"] == 4)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
    try:
        answered = await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        answered = b""  # reset: closed unanswered too
    assert answered == b""  # closed unanswered
    writer.close()
    for _, w in held:
        w.close()
    await until(lambda: not guarded.held.count)


async def test_an_ordinary_client_is_served(site: tuple[GuardedSite, int]) -> None:
    _, port = site
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # one kept-alive connection, past the head deadline
            async with http.get(f"http://127.0.0.1:{port}{PATH}") as resp:
                assert resp.status == 200
                assert await resp.text() == "key-authorization"
            await asyncio.sleep(1.3)
