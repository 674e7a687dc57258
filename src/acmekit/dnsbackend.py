"""dnspython's asyncio backend, with no socket outliving a cancelled query.

dnspython opens a socket per question (`loop.create_datagram_endpoint`, or a connection
for TCP) and closes it when the question ends, cancelled or not. But when the task asking
is cancelled while that call waits for the loop to hand the new transport over (a lookup's
or a validation's bound firing while the loop is busy, as it is when many lookups time out
together; a NOTIFY round or a client's dns-01 step stopped), asyncio closes the socket and
uvloop (0.23) does not: the socket stays open and registered with the loop, held by
nobody, until the process runs out of descriptors.

`ClosingBackend` opens each socket in a task of its own that the cancellation does not
reach (`asyncio.shield`): the cancelled query goes on at once, and the socket, once made,
is closed. Every dnspython async query of the project passes `backend=CLOSING_BACKEND`:
the CA's validation lookups (CAA, CNAME, DNSSEC), the DNS server's NOTIFYs and status
queries, and the client's dns-01 lookups and RFC 2136 UPDATEs. Only dnspython's path pays
for the task; the CA's stub (`server/validation/stub.py`) closes its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dns._asyncio_backend

_closing: set[asyncio.Task[None]] = set()  # closes in progress, held until done


class ClosingBackend(dns._asyncio_backend.Backend):
    """dnspython's asyncio backend (what `dns.asyncbackend.get_backend("asyncio")` gives),
    whose sockets are closed even when the lookup that asked for one is cancelled before
    it got it."""

    async def make_socket(self, *args: Any, **kwargs: Any) -> Any:
        made = super().make_socket(*args, **kwargs)  # type: ignore[no-untyped-call]
        opening = asyncio.ensure_future(made)
        try:
            return await asyncio.shield(opening)
        except BaseException:
            opening.add_done_callback(_close_opened)
            raise


def _close_opened(opening: asyncio.Future[Any]) -> None:
    """The socket a cancelled lookup asked for, closed once it is made."""
    if opening.cancelled() or opening.exception() is not None:
        return
    closing = opening.get_loop().create_task(opening.result().close())
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)


CLOSING_BACKEND = ClosingBackend()
