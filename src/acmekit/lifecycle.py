"""`async with` for objects that hold something to let go of (a listener, a connection
pool, clients): one definition of `__aenter__` and `__aexit__`, so that each class
writes only what is its own, `close()` (and `start()` for a listener).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class AsyncClosing(ABC):
    """`async with obj as o:` gives `obj` itself and awaits `obj.close()` however the
    block ends; an exception from the block is not suppressed."""

    @abstractmethod
    async def close(self) -> None:
        """Let go of what the object holds."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncStarting(AsyncClosing):
    """As `AsyncClosing`, and entering awaits `start()` first: a server is listening
    inside the block, and a failure to start raises before the block runs."""

    @abstractmethod
    async def start(self) -> None:
        """Take hold of what `close()` lets go of."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self
