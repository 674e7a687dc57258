"""The standalone http-01 responder on a real loopback socket."""

from __future__ import annotations

from acmekit.client import AiohttpTransport, Challenge
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.protocol.messages import ChallengeStatus, Identifier, IdentifierType
from acmekit_testkit.ports import free_port

NAME = Identifier(IdentifierType.DNS, "a.x.test")


def _challenge(token: str) -> Challenge:
    return Challenge(f"https://ca.test/chall/{token}", "http-01", ChallengeStatus.PENDING, token)


async def _get(port: int, token: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}/.well-known/acme-challenge/{token}"
    async with AiohttpTransport() as transport:
        resp = await transport.request("GET", url, headers={}, body=None)
        return resp.status, resp.body.decode()


async def test_serves_what_is_presented_until_the_last_cleanup() -> None:
    port = free_port()
    first, second = _challenge("tok-" + "a" * 22), _challenge("tok-" + "b" * 22)
    async with StandaloneHttpSolver("127.0.0.1", port) as solver:
        await solver.present(NAME, first, "ka-first")
        await solver.present(NAME, second, "ka-second")
        await solver.present(NAME, first, "ka-first")  # a second order sharing the authz
        assert await _get(port, first.token or "") == (200, "ka-first")
        assert await _get(port, second.token or "") == (200, "ka-second")
        await solver.cleanup(NAME, first, "ka-first")
        assert (await _get(port, first.token or ""))[0] == 200
        await solver.cleanup(NAME, first, "ka-first")
        assert (await _get(port, first.token or ""))[0] == 404
        assert solver.presented == 1
        assert (await _get(port, "unknown"))[0] == 404


async def test_starts_on_first_present_and_can_restart_after_close() -> None:
    port = free_port()
    solver = StandaloneHttpSolver("127.0.0.1", port)
    chall = _challenge("t" * 30)
    await solver.present(NAME, chall, "ka")
    assert await _get(port, "t" * 30) == (200, "ka")
    await solver.close()
    await solver.start()
    assert await _get(port, "t" * 30) == (200, "ka")  # presented tokens survive a restart
    await solver.close()
