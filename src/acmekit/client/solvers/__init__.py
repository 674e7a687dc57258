"""Solvers make a challenge answerable: `present` before the CA looks, `cleanup` after.

Optional capabilities are small Protocols, checked with `isinstance` (acmez's way):

- `Waiter`: `async def wait(self) -> None`, awaited once after every challenge of an
  order (or of many orders) has been presented and before any is answered: a DNS
  solver waits there for propagation, so the wait overlaps across names.
- `Closer`: `async def close(self) -> None`, for a solver that holds something (a
  listener) to let go of once its orders are done.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from acmekit.client.resources import Challenge
from acmekit.protocol.messages import Identifier


class Solver(Protocol):
    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None: ...

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None: ...


@runtime_checkable
class Waiter(Protocol):
    """The optional step between presenting every challenge and answering any."""

    async def wait(self) -> None: ...


@runtime_checkable
class Closer(Protocol):
    """A solver that holds something to let go of when its orders are done."""

    async def close(self) -> None: ...


class WaitingSolver(Solver, Waiter, Protocol):
    """A Solver with the optional `wait` step."""


async def close_solvers(solvers: Iterable[Solver]) -> None:
    """Close each distinct solver that has something to let go of."""
    for solver in {id(s): s for s in solvers}.values():
        if isinstance(solver, Closer):
            await solver.close()


__all__ = ["Closer", "Solver", "Waiter", "WaitingSolver", "close_solvers"]
