"""The fleet's issuer answers every pending authorization of an order at once and cleans
up the http-01 tokens afterwards. One answer that failed early used to end the wait at
once, and the cleanup then took away the tokens of validations the CA was still making:
they failed too (invalid authorizations, counted as failed validations for their names).

Against the CA as a process over HTTPS on loopback. The http-01 responder here answers
for one name with 404 at once and for the other only after a delay, from the tokens the
solver presented, so the slow validation finds its token only if the cleanup waited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.resources import Challenge
from acmekit.fleet.acme import AcmeIssuer
from acmekit.protocol.messages import AuthorizationStatus, ChallengeType, Identifier
from acmekit.protocol.problems import AcmeError
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port

FAILING = "fails.cleanup.regress.test"
SLOW = "slow.cleanup.regress.test"
DELAY = 1.5
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class TokenSolver:
    """http-01 tokens presented and cleaned up, served by `responder`."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}

    async def present(self, identifier: Identifier, challenge: Challenge, key_auth: str) -> None:
        self.tokens[challenge.token or ""] = key_auth

    async def cleanup(self, identifier: Identifier, challenge: Challenge, key_auth: str) -> None:
        self.tokens.pop(challenge.token or "", None)


@contextlib.asynccontextmanager
async def responder(port: int, solver: TokenSolver) -> AsyncIterator[None]:
    """404 at once for FAILING; for SLOW, the token's answer as it stands after DELAY."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        path = head.split(" ", 2)[1]
        host = next(
            line.split(":", 1)[1].strip().split(":")[0]
            for line in head.split("\r\n")[1:]
            if line.lower().startswith("host:")
        )
        if host == SLOW:
            await asyncio.sleep(DELAY)
        answer = None if host == FAILING else solver.tokens.get(path.rsplit("/", 1)[-1])
        if answer is None:
            writer.write(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        else:
            body = answer.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
                % (len(body), body)
            )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_a_failed_answer_leaves_the_others_tokens_until_they_are_decided(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    http_port = free_port()
    kw = {
        "dns_port": dns.dns_port,
        "http01_port": http_port,
        "tlsalpn01_port": free_port(),
        "settings": {"challenge_wait": 0.1},
    }
    solver = TokenSolver()
    key = ec.generate_private_key(ec.SECP256R1())
    with running_acmekit_server(tmp_path, **kw) as ca:  # type: ignore[arg-type]
        async with (
            responder(http_port, solver),
            Client(ca.directory_url, key, ca_bundle=str(ca.root_path)) as client,
        ):
            await client.register()
            order = await client.new_order([FAILING, SLOW])
            issuer = AcmeIssuer(client, {ChallengeType.HTTP_01: solver}, "test")
            with pytest.raises(AcmeError):
                await issuer._authorize(order, ChallengeType.HTTP_01)
            assert solver.tokens == {}  # cleaned up, once every answer was decided
            by_name = {a.identifier.value: a.status for a in await client.authorizations(order)}
    assert by_name == {FAILING: AuthorizationStatus.INVALID, SLOW: AuthorizationStatus.VALID}
