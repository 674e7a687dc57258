"""`async with` from acmekit.lifecycle: what is entered, what is awaited on the way out."""

from __future__ import annotations

import pytest

from acmekit.lifecycle import AsyncClosing, AsyncStarting


class Recorder(AsyncStarting):
    def __init__(self, fail_start: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_start = fail_start

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail_start:
            raise OSError("port taken")

    async def close(self) -> None:
        self.calls.append("close")


class Closer(AsyncClosing):
    def __init__(self) -> None:
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def test_closing_gives_itself_and_closes_on_exit() -> None:
    closer = Closer()
    async with closer as entered:
        assert entered is closer
        assert closer.closed == 0
    assert closer.closed == 1


async def test_closing_closes_when_the_block_raises_and_lets_the_error_through() -> None:
    closer = Closer()
    with pytest.raises(ValueError, match="boom"):
        async with closer:
            raise ValueError("boom")
    assert closer.closed == 1


async def test_starting_starts_before_the_block_and_closes_after() -> None:
    rec = Recorder()
    async with rec as entered:
        assert entered is rec
        rec.calls.append("block")
    assert rec.calls == ["start", "block", "close"]


async def test_a_failed_start_raises_before_the_block_runs() -> None:
    rec = Recorder(fail_start=True)
    with pytest.raises(OSError, match="port taken"):
        async with rec:
            rec.calls.append("block")
    assert rec.calls == ["start"]


def test_a_class_without_close_cannot_be_made() -> None:
    class NoClose(AsyncClosing):
        pass

    with pytest.raises(TypeError):
        NoClose()  # type: ignore[abstract]
