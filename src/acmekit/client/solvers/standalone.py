"""http-01 answered by our own small web server (RFC 8555 §8.3).

One aiohttp.web server, started on first `present` (or by `start()`) and kept for the
life of the solver, serves `/.well-known/acme-challenge/TOKEN` for every challenge
presented, so one solver carries thousands of challenges across many orders at once.
Tokens are reference-counted: two orders that share an authorization may present and
clean up the same token independently.
"""

from __future__ import annotations

import logging

from aiohttp import web

from acmekit.client.resources import Challenge
from acmekit.client.solvers.listening import ListeningSolver, Stop
from acmekit.protocol.challenges import HTTP01_PATH
from acmekit.protocol.messages import Identifier

log = logging.getLogger(__name__)


class StandaloneHttpSolver(ListeningSolver[str]):
    """Key authorizations by token, served under `/.well-known/acme-challenge/`."""

    kind = "http-01"

    def __init__(self, address: str = "", port: int = 80) -> None:
        super().__init__(address, port)

    async def _listen(self) -> Stop:
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
        return runner.cleanup

    def _key(self, identifier: Identifier, challenge: Challenge) -> str:
        return challenge.token or ""

    async def _serve(self, request: web.Request) -> web.Response:
        found = self._answers.get(request.match_info["token"])
        if found is None:
            return web.Response(status=404, text="no such challenge")
        return web.Response(text=found, content_type="text/plain")

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        await self.start()
        self._answers.add(self._key(identifier, challenge), key_authorization)
        log.debug("presenting http-01 for %s", identifier.value)
