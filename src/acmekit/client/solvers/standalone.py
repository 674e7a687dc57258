"""http-01 answered by our own small web server (RFC 8555 §8.3).

One aiohttp.web server, started on first `present` (or by `start()`) and kept for the
life of the solver, serves `/.well-known/acme-challenge/TOKEN` for every challenge
presented, so one solver carries thousands of challenges across many orders at once.
Tokens are reference-counted: two orders that share an authorization may present and
clean up the same token independently.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from aiohttp import web

from acmekit.client.resources import Challenge
from acmekit.client.solvers.presented import Presented
from acmekit.protocol.challenges import HTTP01_PATH
from acmekit.protocol.messages import Identifier

log = logging.getLogger(__name__)


class StandaloneHttpSolver:
    def __init__(self, address: str = "", port: int = 80) -> None:
        self.address = address
        self.port = port
        self._answers: Presented[str, str] = Presented()
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            if self._runner is not None:
                return
            app = web.Application()
            app.router.add_get(HTTP01_PATH + "{token}", self._serve)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.address or None, self.port)
            try:
                await site.start()
            except OSError:
                await runner.cleanup()
                raise
            self._runner = runner
            log.info("http-01 responder listening on %s:%d", self.address or "*", self.port)

    async def close(self) -> None:
        async with self._lock:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        found = self._answers.get(request.match_info["token"])
        if found is None:
            return web.Response(status=404, text="no such challenge")
        return web.Response(text=found, content_type="text/plain")

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        await self.start()
        self._answers.add(challenge.token or "", key_authorization)
        log.debug("presenting http-01 for %s", identifier.value)

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self._answers.release(challenge.token or "")

    @property
    def presented(self) -> int:
        """How many distinct tokens are being served now."""
        return len(self._answers)

    async def __aenter__(self) -> StandaloneHttpSolver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
