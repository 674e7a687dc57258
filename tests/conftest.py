"""Fixtures shared by every kind of test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.acme_raw import Http01Responder


@pytest.fixture
async def responder() -> AsyncIterator[Http01Responder]:
    """An http-01 responder on a free loopback port for the CA to validate against."""
    r = Http01Responder()
    await r.start()
    yield r
    await r.stop()
