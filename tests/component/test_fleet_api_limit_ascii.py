"""The fleet API's `limit` is ASCII digits: `int()` read U+0661 (ARABIC-INDIC DIGIT ONE)
as 1, and a sign, spaces or underscores as a number too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from acmekit.fleet.api import api_app
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import to_us

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    runner = web.AppRunner(api_app(inventory, FleetMetrics(), lambda: to_us(START)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        for name in ("a.example.test", "b.example.test"):
            async with http.post(f"http://127.0.0.1:{port}/domains", json={"names": [name]}):
                pass
        yield http, f"http://127.0.0.1:{port}"
    await runner.cleanup()
    inventory.close()


@pytest.mark.parametrize("limit", ["\u0661", "+1", " 1", "0_1"])
async def test_a_limit_of_other_than_ascii_digits_is_refused(
    api: tuple[aiohttp.ClientSession, str], limit: str
) -> None:
    http, url = api
    async with http.get(f"{url}/domains", params={"limit": limit}) as resp:
        assert resp.status == 400 and resp.content_type == "application/problem+json"


@pytest.mark.parametrize(("limit", "count"), [("1", 1), ("100", 2), ("0001", 1)])
async def test_a_limit_of_ascii_digits_is_read(
    api: tuple[aiohttp.ClientSession, str], limit: str, count: int
) -> None:
    http, url = api
    async with http.get(f"{url}/domains", params={"limit": limit}) as resp:
        assert resp.status == 200
        assert len((await resp.json())["domains"]) == count
