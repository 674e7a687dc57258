"""What the standalone solvers (http-01, tls-alpn-01) share: a listener of their own.

The listener is started once, on the first `present` (or by `start()` or `async with`),
and kept until `close()`, so one solver carries any number of challenges across many
orders at once. Answers are counted by holder (`Presented`): two orders that share an
authorization may present and clean up the same challenge independently. A subclass
says how to listen and what the validator's request names an answer by.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, TypeVar

from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import PortUnavailable
from acmekit.client.solvers.presented import Presented
from acmekit.lifecycle import AsyncStarting
from acmekit.protocol.messages import Identifier

V = TypeVar("V")
Stop = Callable[[], Awaitable[None]]


class ListeningSolver(AsyncStarting, Generic[V]):
    """Answers of type `V` served by a listener on `address:port` ("" for every
    address)."""

    kind: ClassVar[str]  # the challenge type, as the log names it

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self._answers: Presented[str, V] = Presented()
        self._stop: Stop | None = None  # set while listening
        # Many orders may present at once: the first starts the listener, the rest wait.
        self._lock = asyncio.Lock()

    @abstractmethod
    async def _listen(self) -> Stop:
        """Start listening (OSError if the port cannot be had, which `start` raises as
        PortUnavailable); what stops it."""

    @abstractmethod
    def _key(self, identifier: Identifier, challenge: Challenge) -> str:
        """What the validator's request names this challenge's answer by."""

    async def start(self) -> None:
        async with self._lock:
            if self._stop is not None:
                return
            try:
                self._stop = await self._listen()
            except OSError as exc:
                raise PortUnavailable(self.kind, self.address, self.port, exc) from exc
            # Logged under the subclass's module, as before the skeleton was shared.
            logging.getLogger(type(self).__module__).info(
                "%s responder listening on %s:%d", self.kind, self.address or "*", self.port
            )

    async def close(self) -> None:
        """Stop listening; presented answers are kept for a later `start()`."""
        async with self._lock:
            if self._stop is not None:
                await self._stop()
                self._stop = None

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self._answers.release(self._key(identifier, challenge))

    @property
    def presented(self) -> int:
        """How many distinct answers (tokens, server names) are being served now."""
        return len(self._answers)
