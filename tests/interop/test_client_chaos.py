"""Pebble rejecting half of all good nonces, and offering alternate chains: the client
retries badNonce with the nonce that came with the error, and picks a preferred chain."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.client import AiohttpTransport, Client, HttpResponse
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.protocol.messages import ChallengeType
from acmekit_testkit.challtestsrv import running_challtestsrv
from acmekit_testkit.csr import leaf_names, make_csr
from acmekit_testkit.pebble import PebbleHandle, running_pebble
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop

CHAOS = {"PEBBLE_WFE_NONCEREJECT": "50", "PEBBLE_ALTERNATE_ROOTS": "1"}


@dataclass
class CountingTransport:
    """The real transport, counting the badNonce answers that pass through it."""

    inner: AiohttpTransport
    bad_nonces: int = 0
    posts: int = 0

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None
    ) -> HttpResponse:
        resp = await self.inner.request(method, url, headers=headers, body=body)
        if method == "POST":
            self.posts += 1
            if resp.status == 400 and b"badNonce" in resp.body:
                self.bad_nonces += 1
        return resp


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PebbleHandle, int]]:
    tmp = tmp_path_factory.mktemp("chaos")
    http_port = free_port()
    with (
        running_challtestsrv(tmp) as dns,
        running_pebble(
            tmp, dns_port=dns.dns_port, http_port=http_port, tls_port=free_port(), env=CHAOS
        ) as pebble,
    ):
        yield pebble, http_port


def _cn(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_bad_nonces_are_retried_through_a_whole_issuance(
    chaos: tuple[PebbleHandle, int],
) -> None:
    pebble, http_port = chaos
    transport = CountingTransport(AiohttpTransport(str(pebble.root_ca_path)))
    key = ec.generate_private_key(ec.SECP256R1())
    names = ("nonce.x.test", "www.nonce.x.test")
    async with (
        transport.inner,
        StandaloneHttpSolver("127.0.0.1", http_port) as solver,
        Client(pebble.directory_url, key, transport=transport, bad_nonce_retries=30) as c,
    ):
        await c.register()
        _, csr = make_csr(*names)
        issued = await c.issue(names, {ChallengeType.HTTP_01: solver}, csr)
    assert leaf_names(issued.fullchain_pem) == set(names)
    # At 50% rejection over a dozen or more POSTs, some were surely rejected and retried.
    assert transport.bad_nonces > 0
    assert transport.posts > transport.bad_nonces


async def test_preferred_chain_picks_the_alternate_root(chaos: tuple[PebbleHandle, int]) -> None:
    pebble, http_port = chaos
    alternate_root = x509.load_pem_x509_certificate(pebble.root_pem(1).encode())
    wanted = _cn(alternate_root.subject)
    key = ec.generate_private_key(ec.SECP256R1())
    async with (
        StandaloneHttpSolver("127.0.0.1", http_port) as solver,
        Client(
            pebble.directory_url, key, ca_bundle=str(pebble.root_ca_path), bad_nonce_retries=30
        ) as c,
    ):
        await c.register()
        _, csr = make_csr("chain.x.test")
        solvers = {ChallengeType.HTTP_01: solver}
        default = await c.issue(["chain.x.test"], solvers, csr)
        preferred = await c.issue(["chain.x.test"], solvers, csr, preferred_chain=wanted)
    assert default.alternates  # Pebble offered another chain by Link rel="alternate"
    top_default = x509.load_pem_x509_certificates(default.fullchain_pem.encode())[-1]
    top = x509.load_pem_x509_certificates(preferred.fullchain_pem.encode())[-1]
    assert _cn(top_default.issuer) != wanted
    assert _cn(top.issuer) == wanted
    assert leaf_names(preferred.fullchain_pem) == {"chain.x.test"}
