"""The fleet's issuer, answering a challenge of an authorization that another order of
its account shares and has answered with another challenge type (still being
validated): the CA refuses the second answer (malformed; RFC 8555 §7.1.6), and the
issuer waits for the authorization the other challenge decides instead of failing its
site's order. The CA as a process over HTTPS on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.fleet.acme import AcmeIssuer
from acmekit.protocol.messages import AuthorizationStatus, ChallengeStatus, ChallengeType
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.slowrelay import slow_relay

NAME = "shared.authz.fleet.test"


async def test_the_fleet_waits_for_another_answer_of_a_shared_authorization(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    relay, http_port = free_port(), free_port()
    kw = {"dns_port": dns.dns_port, "http01_port": relay, "settings": {"challenge_wait": 0.1}}
    key = ec.generate_private_key(ec.SECP256R1())
    with running_acmekit_server(tmp_path, **kw) as ca:  # type: ignore[arg-type]
        bundle = str(ca.root_path)
        async with (
            slow_relay(relay, http_port, 1.5),  # http-01 held 1.5 s: still processing
            StandaloneHttpSolver("127.0.0.1", http_port) as http,
            Client(ca.directory_url, key, ca_bundle=bundle) as first,
            Client(ca.directory_url, key, ca_bundle=bundle) as fleet,
        ):
            await first.register()
            await fleet.register()
            by_http = asyncio.create_task(
                first.issue([NAME], {ChallengeType.HTTP_01: http}, make_csr(NAME)[1])
            )
            await asyncio.sleep(0.3)  # its http-01 answered, held on the relay
            order = await fleet.new_order([NAME])
            (authz,) = await fleet.authorizations(order)
            assert authz.status == AuthorizationStatus.PENDING
            assert any(c.status == ChallengeStatus.PROCESSING for c in authz.challenges)
            other = next(c for c in authz.challenges if c.known_type == ChallengeType.DNS_01)
            # refused by the CA, then decided by the http-01 answer: no exception
            await AcmeIssuer(fleet, {}, "test")._answer(authz, other)
            assert (await fleet.authorization(authz.url)).status == AuthorizationStatus.VALID
            issued = await by_http
    assert issued.order.authorizations == order.authorizations  # one, shared
