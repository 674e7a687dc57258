"""Two orders of one account for one name share its pending authorization (the CA
reuses it); each client run answers the challenge type it can solve. Against the CA as
a process over HTTPS on loopback, which now refuses a second challenge of an
authorization whose first is being validated (malformed; RFC 8555 §7.1.6). acmekit's
client raised that refusal: its order failed, and its relinquishing (§7.5.2)
deactivated the shared authorization, so the other order, whose validation was passing,
failed too. It now waits for the authorization the other challenge decides."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Client
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.client.solvers.tlsalpn import StandaloneTlsAlpnSolver
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port
from acmekit_testkit.slowrelay import slow_relay

NAME = "shared.authz.regress.test"


async def test_an_order_that_finds_another_challenge_answered_waits_for_it(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
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
            by_alpn = await second.issue(
                [NAME], {ChallengeType.TLS_ALPN_01: alpn}, make_csr(NAME)[1]
            )
            issued = await by_http
    assert by_alpn.order.url != issued.order.url
    assert by_alpn.order.authorizations == issued.order.authorizations  # one, shared
