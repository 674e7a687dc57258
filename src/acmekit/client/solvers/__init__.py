"""Solvers make a challenge answerable: `present` before the CA looks, `cleanup` after.

A Solver may also have `async def wait(self) -> None`, awaited once after every
challenge of an order (or of many orders) has been presented and before any is
answered: a DNS solver waits there for propagation, so the wait overlaps across names.
"""

from __future__ import annotations

from typing import Protocol

from acmekit.client.resources import Challenge
from acmekit.protocol.messages import Identifier


class Solver(Protocol):
    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None: ...

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None: ...


class WaitingSolver(Solver, Protocol):
    """A Solver with the optional `wait` step."""

    async def wait(self) -> None: ...


__all__ = ["Solver", "WaitingSolver"]
