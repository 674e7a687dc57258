"""The DNS server's HTTP API against slow and greedy clients, on real sockets: a request
head trickled byte by byte is cut off at its deadline, one client address holds at most
64 connections (the 65th is closed unanswered, and served again once one goes), and an
ordinary client, keeping its connection alive between requests, is served throughout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from acmekit.dns.service import DnsConfig, DnsService
from acmekit.webguard import MAX_PER_CLIENT, ClientLimits
from acmekit_testkit.slowclient import trickle_until_closed

SHORT = ClientLimits(head_timeout=1.0)
LONG = ClientLimits(head_timeout=600.0)  # only the bound acts


@asynccontextmanager
async def dns_api(limits: ClientLimits) -> AsyncIterator[str]:
    """A running `acmekit dns` on loopback (port 0) and its API's base URL."""
    config = DnsConfig(listen_port=0, api_port=0, zones=("slow.test",), api_limits=limits)
    service = DnsService(config)
    await service.start()
    try:
        assert service.api_url is not None
        yield service.api_url
    finally:
        await service.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_a_trickled_head_is_cut_off() -> None:
    async with dns_api(SHORT) as url:
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(url))
        assert await trickle_until_closed(
            reader, writer, b"POST /set-txt HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
        )
        writer.close()


async def _health(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/health") as resp:
        return resp.status


async def test_one_address_holds_at_most_its_share() -> None:
    async with dns_api(LONG) as url:
        port = _port(url)
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_PER_CLIENT)]
        await asyncio.sleep(0.2)  # let the server accept them all
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answered = await asyncio.wait_for(reader.read(), 20)
        except ConnectionError:
            answered = b""  # reset: closed unanswered too
        assert answered == b""  # the 65th is closed unanswered
        writer.close()
        assert not any(r.at_eof() for r, _ in held)  # the 64 are kept
        held.pop()[1].close()
        status = 0
        for _ in range(40):  # one gone, one more may come
            try:
                status = await _health(url)
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)  # the server has yet to see the close
        assert status == 200
        for _, w in held:
            w.close()


async def test_an_ordinary_client_is_served() -> None:
    async with dns_api(SHORT) as url, aiohttp.ClientSession() as http:
        for n in range(3):  # one kept-alive connection, past the head deadline
            body = {"host": "_acme-challenge.slow.test.", "value": f"v{n}"}
            async with http.post(f"{url}/set-txt", json=body) as resp:
                assert resp.status == 200
            await asyncio.sleep(1.3)
