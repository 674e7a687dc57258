"""The wait for a certificate after finalize is bounded by `issuance_timeout` (certbot's
--issuance-timeout), apart from the authorizations' `poll_timeout`: our CA in-process
behind a rewriter that shows every finished order as still processing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from acmekit.client import Client
from acmekit.client.retry import DeadlineExceeded
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.client.transport import AsgiTransport
from acmekit.protocol.messages import ChallengeType
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Http01Responder, new_key
from acmekit_testkit.csr import make_csr
from acmekit_testkit.hostile_ca import RewritingCa

DIRECTORY = "https://ca.test/directory"


class SlowIssuer(RewritingCa):
    """An order that is valid is shown as processing, without its certificate."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, "", None)

    def _rewrite(self, doc: Any) -> Any:
        if isinstance(doc, dict) and "finalize" in doc and doc.get("status") == "valid":
            return {k: v for k, v in doc.items() if k != "certificate"} | {"status": "processing"}
        return doc


@pytest.fixture
async def solver(responder: Http01Responder) -> AsyncIterator[StandaloneHttpSolver]:
    port = responder.port  # the CA validates on this port: the client's solver takes it
    await responder.stop()
    async with StandaloneHttpSolver("127.0.0.1", port) as s:
        yield s


async def test_issuance_timeout_bounds_the_wait_after_finalize(
    ca: Assembly, solver: StandaloneHttpSolver
) -> None:
    transport = AsgiTransport(SlowIssuer(ca.app))
    async with Client(DIRECTORY, new_key(), transport=transport, issuance_timeout=1) as client:
        await client.register()
        _, csr = make_csr("slow.timeout.test")
        with pytest.raises(DeadlineExceeded) as err:
            await client.issue(["slow.timeout.test"], {ChallengeType.HTTP_01: solver}, csr)
    assert "still not done after 1 s" in str(err.value)
    assert client.poll_timeout == 300  # the authorizations' own bound is untouched
