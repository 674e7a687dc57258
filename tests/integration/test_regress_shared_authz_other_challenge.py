"""Two orders of one account for one name share its pending authorization (the CA
reuses it); each answers the challenge type it can solve. Against the CA as a process
over HTTPS on loopback, which now refuses a second challenge of an authorization whose
first is being validated (malformed; RFC 8555 §7.1.6).

acmekit's client raised that refusal: its order failed, and its relinquishing (§7.5.2)
deactivated the shared authorization, so the other order, whose validation was passing,
failed too. The fleet's issuer, which answers challenges by its own path, failed its
site's order the same way. Both now wait for the authorization the other challenge
decides (`Client.decided_elsewhere`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.resources import IssuedCertificate
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.client.solvers.tlsalpn import StandaloneTlsAlpnSolver
from acmekit.fleet.acme import AcmeIssuer
from acmekit.protocol.messages import AuthorizationStatus, ChallengeStatus, ChallengeType
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.slowrelay import slow_relay

NAME = "shared.authz.regress.test"


@dataclass
class HeldHttp01:
    """An order for NAME whose http-01 answer the CA is still validating, and a second
    client of the same account."""

    by_http: asyncio.Task[IssuedCertificate]
    second: Client
    alpn: StandaloneTlsAlpnSolver


@asynccontextmanager
async def http01_held(tmp_path: Path, dns: DnsServerHandle) -> AsyncIterator[HeldHttp01]:
    relay, http_port, alpn_port = free_port(), free_port(), free_port()
    kw = {
        "dns_port": dns.dns_port,
        "http01_port": relay,
        "tlsalpn01_port": alpn_port,
        "settings": {"challenge_wait": 0.1},
    }
    key = ec.generate_private_key(ec.SECP256R1())
    with running_acmekit_server(tmp_path, **kw) as ca:  # type: ignore[arg-type]
        bundle = str(ca.root_path)
        async with (
            slow_relay(relay, http_port, 1.5),  # http-01 held 1.5 s: still processing
            StandaloneHttpSolver("127.0.0.1", http_port) as http,
            StandaloneTlsAlpnSolver("127.0.0.1", alpn_port) as alpn,
            Client(ca.directory_url, key, ca_bundle=bundle) as first,
            Client(ca.directory_url, key, ca_bundle=bundle) as second,
        ):
            await first.register()
            await second.register()
            by_http = asyncio.create_task(
                first.issue([NAME], {ChallengeType.HTTP_01: http}, make_csr(NAME)[1])
            )
            await asyncio.sleep(0.3)  # its http-01 answered, held on the relay
            yield HeldHttp01(by_http, second, alpn)


async def test_an_order_that_finds_another_challenge_answered_waits_for_it(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    async with http01_held(tmp_path, dns) as held:
        by_alpn = await held.second.issue(
            [NAME], {ChallengeType.TLS_ALPN_01: held.alpn}, make_csr(NAME)[1]
        )
        issued = await held.by_http
    assert by_alpn.order.url != issued.order.url
    assert by_alpn.order.authorizations == issued.order.authorizations  # one, shared


async def test_the_fleet_waits_for_another_answer_of_a_shared_authorization(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    async with http01_held(tmp_path, dns) as held:
        fleet = held.second
        order = await fleet.new_order([NAME])
        (authz,) = await fleet.authorizations(order)
        assert authz.status == AuthorizationStatus.PENDING
        assert any(c.status == ChallengeStatus.PROCESSING for c in authz.challenges)
        other = next(c for c in authz.challenges if c.known_type == ChallengeType.DNS_01)
        # refused by the CA, then decided by the http-01 answer: no exception
        await AcmeIssuer(fleet, {}, "test")._answer(authz, other)
        assert (await fleet.authorization(authz.url)).status == AuthorizationStatus.VALID
        issued = await held.by_http
    assert issued.order.authorizations == order.authorizations  # one, shared
