"""Orders of one account answered together, as a fleet answers them, against the CA as a
process over HTTPS on loopback, which runs at most `max_identifiers` validations of an
account at once (rateLimited beyond, with a Retry-After of the validation timeout).
The client (acmekit's, which the fleet's issuer uses too) raised the first rateLimited
answer: the order failed, and its solver's cleanup withdrew the tokens of the
validations still under way beside it, so those failed too. It now answers again
when the Retry-After says, and every order is issued."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.slowrelay import slow_relay

CAP = 2  # max_identifiers here
DELAY = 0.5  # seconds each http-01 fetch is held on its way: validations overlap


async def test_orders_of_one_account_past_the_cap_are_all_issued(
    tmp_path: Path, dns: DnsServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "acmekit.client.client")
    relay_port, solver_port = free_port(), free_port()
    settings = {"max_identifiers": CAP, "validation_timeout": 1.0}
    kw = {"dns_port": dns.dns_port, "http01_port": relay_port, "settings": settings}
    with running_acmekit_server(tmp_path, **kw) as ca:  # type: ignore[arg-type]
        async with (
            slow_relay(relay_port, solver_port, DELAY),
            StandaloneHttpSolver("127.0.0.1", solver_port) as solver,
            Client(
                ca.directory_url,
                ec.generate_private_key(ec.SECP256R1()),
                ca_bundle=str(ca.root_path),
            ) as client,
        ):
            await client.register()
            sites = [(f"a{i}.cap.regress.test", f"b{i}.cap.regress.test") for i in range(3)]
            solvers = {ChallengeType.HTTP_01: solver}
            issued = await asyncio.gather(
                *(client.issue(names, solvers, make_csr(*names)[1]) for names in sites)
            )
    assert len(issued) == len(sites)
    assert all(c.fullchain_pem.startswith("-----BEGIN CERTIFICATE-----") for c in issued)
    assert "rate limited, answered again" in caplog.text  # the cap was reached on the way
