"""The client against Pebble with its chaos on: rejected nonces, reused authorizations,
triple validation. One Pebble (and one challtestsrv for its DNS) serves this module."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.client import Challenge, Client, describe_failures
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.protocol.challenges import dns01_record_name, dns01_txt_value
from acmekit.protocol.messages import AccountStatus, ChallengeType, Identifier, OrderStatus
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit_testkit.challtestsrv import ChalltestsrvHandle, running_challtestsrv
from acmekit_testkit.csr import leaf_names, make_csr
from acmekit_testkit.pebble import PebbleHandle, running_pebble
from acmekit_testkit.ports import free_port

pytestmark = pytest.mark.interop


class Stack:
    def __init__(self, pebble: PebbleHandle, dns: ChalltestsrvHandle, http_port: int) -> None:
        self.pebble = pebble
        self.dns = dns
        self.http_port = http_port

    def client(self, key: ec.EllipticCurvePrivateKey | None = None) -> Client:
        return Client(
            self.pebble.directory_url,
            key or ec.generate_private_key(ec.SECP256R1()),
            ca_bundle=str(self.pebble.root_ca_path),
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("pebble")
    http_port = free_port()
    with (
        running_challtestsrv(tmp) as dns,
        running_pebble(tmp, dns_port=dns.dns_port, http_port=http_port, tls_port=free_port()) as p,
    ):
        yield Stack(p, dns, http_port)


@pytest.fixture
async def http01(stack: Stack) -> AsyncIterator[StandaloneHttpSolver]:
    async with StandaloneHttpSolver("127.0.0.1", stack.http_port) as solver:
        yield solver


async def _issue(c: Client, solver: StandaloneHttpSolver, *names: str) -> tuple[str, bytes]:
    key, csr = make_csr(*names)
    issued = await c.issue(names, {ChallengeType.HTTP_01: solver}, csr)
    assert issued.order.status == OrderStatus.VALID
    assert leaf_names(issued.fullchain_pem) == set(names)
    leaf = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert leaf.public_key() == key.public_key()
    return issued.fullchain_pem, leaf.public_bytes(serialization.Encoding.DER)


async def test_register_and_find_existing(stack: Stack) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    async with stack.client(key) as c:
        account = await c.register(contact=["mailto:a@x.test"])
        assert account.status == AccountStatus.VALID
        assert account.contact == ("mailto:a@x.test",)
    async with stack.client(key) as again:
        found = await again.register(only_return_existing=True)
        assert found.url == account.url
    async with stack.client() as stranger:
        with pytest.raises(AcmeError) as err:
            await stranger.register(only_return_existing=True)
        assert err.value.problem.type == ProblemType.ACCOUNT_DOES_NOT_EXIST


async def test_issue_one_name_and_verify_with_openssl(
    stack: Stack, http01: StandaloneHttpSolver, tmp_path: Path
) -> None:
    async with stack.client() as c:
        await c.register()
        chain, _ = await _issue(c, http01, "one.x.test")
    assert http01.presented == 0  # cleaned up
    certs = x509.load_pem_x509_certificates(chain.encode())
    (tmp_path / "leaf.pem").write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "untrusted.pem").write_text(
        stack.pebble.intermediate_pem()
        + "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs[1:])
    )
    (tmp_path / "root.pem").write_text(stack.pebble.issuing_root_pem())
    out = await asyncio.to_thread(_openssl_verify, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "leaf.pem: OK" in out.stdout


def _openssl_verify(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "untrusted.pem", "leaf.pem"],
        cwd=where,
        capture_output=True,
        text=True,
        check=False,
    )


async def test_issue_two_names_twice_reusing_authorizations(
    stack: Stack, http01: StandaloneHttpSolver
) -> None:
    async with stack.client() as c:
        await c.register()
        await _issue(c, http01, "www.two.x.test", "two.x.test")
        # Pebble reuses valid authorizations half the time: either way this must work.
        await _issue(c, http01, "two.x.test", "www.two.x.test")


async def test_five_concurrent_issues_on_one_client(
    stack: Stack, http01: StandaloneHttpSolver
) -> None:
    async with stack.client() as c:
        await c.register()
        names = [f"c{i}.many.x.test" for i in range(5)]
        chains = await asyncio.gather(*(_issue(c, http01, n) for n in names))
    assert [leaf_names(pem) for pem, _ in chains] == [{n} for n in names]
    assert http01.presented == 0


def _revoked(stack: Stack, der: bytes) -> bool:
    serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
    url = f"{stack.pebble.management_url}/cert-status-by-serial/{serial}"
    ctx = ssl.create_default_context(cafile=str(stack.pebble.root_ca_path))
    with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
        return bool(json.load(resp)["Status"] == "Revoked")


async def test_revoke_by_account(stack: Stack, http01: StandaloneHttpSolver) -> None:
    async with stack.client() as c:
        await c.register()
        _, der = await _issue(c, http01, "revoke-account.x.test")
        assert not await asyncio.to_thread(_revoked, stack, der)
        await c.revoke(der, reason=4)
        assert await asyncio.to_thread(_revoked, stack, der)
        with pytest.raises(AcmeError) as err:
            await c.revoke(der)
        assert err.value.problem.type == ProblemType.ALREADY_REVOKED


async def test_revoke_by_certificate_key(stack: Stack, http01: StandaloneHttpSolver) -> None:
    names = ("revoke-key.x.test",)
    cert_key, csr = make_csr(*names)
    async with stack.client() as c:
        await c.register()
        issued = await c.issue(names, {ChallengeType.HTTP_01: http01}, csr)
    der = x509.load_pem_x509_certificate(issued.cert_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    # Someone with no account at all, holding only the certificate's key.
    async with stack.client() as holder:
        await holder.revoke(der, reason=1, key=cert_key)
    assert await asyncio.to_thread(_revoked, stack, der)


async def test_key_change_then_use_new_key(stack: Stack, http01: StandaloneHttpSolver) -> None:
    old_key = ec.generate_private_key(ec.SECP256R1())
    new_key = ec.generate_private_key(ec.SECP384R1())
    async with stack.client(old_key) as c:
        account = await c.register()
        await c.key_change(new_key)
        assert c.account_key is new_key
        await _issue(c, http01, "rolled.x.test")
    async with stack.client(new_key) as by_new:
        assert (await by_new.register(only_return_existing=True)).url == account.url
    async with stack.client(old_key) as by_old:
        with pytest.raises(AcmeError) as err:
            await by_old.register(only_return_existing=True)
        assert err.value.problem.type == ProblemType.ACCOUNT_DOES_NOT_EXIST


async def test_update_and_deactivate_account(stack: Stack) -> None:
    async with stack.client() as c:
        await c.register(contact=["mailto:old@x.test"])
        updated = await c.update_account(["mailto:new@x.test"])
        assert updated.contact == ("mailto:new@x.test",)
        assert (await c.account()).contact == ("mailto:new@x.test",)
        gone = await c.deactivate_account()
        assert gone.status == AccountStatus.DEACTIVATED
        with pytest.raises(AcmeError) as err:
            await c.new_order(["after.x.test"])
        assert err.value.problem.type == ProblemType.UNAUTHORIZED


class ChalltestsrvDnsSolver:
    """dns-01 through challtestsrv's management API, with the optional `wait` step."""

    def __init__(self, dns: ChalltestsrvHandle) -> None:
        self.dns = dns
        self.waits = 0
        self.live: set[str] = set()

    async def present(self, identifier: Identifier, challenge: Challenge, key_auth: str) -> None:
        host = dns01_record_name(identifier.value) + "."
        await asyncio.to_thread(self.dns.set_txt, host, dns01_txt_value(key_auth))
        self.live.add(host)

    async def cleanup(self, identifier: Identifier, challenge: Challenge, key_auth: str) -> None:
        host = dns01_record_name(identifier.value) + "."
        await asyncio.to_thread(self.dns.clear_txt, host)
        self.live.discard(host)

    async def wait(self) -> None:
        self.waits += 1


class WrongAnswerSolver(StandaloneHttpSolver):
    """Serves a key authorization for some other account: validation must fail."""

    async def present(self, identifier: Identifier, challenge: Challenge, key_auth: str) -> None:
        token = key_auth.split(".", 1)[0]
        await super().present(identifier, challenge, token + ".not-our-thumbprint")


async def test_wildcard_over_dns01_and_base_name_over_http01(
    stack: Stack, http01: StandaloneHttpSolver
) -> None:
    dns01 = ChalltestsrvDnsSolver(stack.dns)
    names = ("*.wild.x.test", "wild.x.test")
    _, csr = make_csr(*names)
    solvers = {ChallengeType.HTTP_01: http01, ChallengeType.DNS_01: dns01}
    async with stack.client() as c:
        await c.register()
        issued = await c.issue(names, solvers, csr)
    assert leaf_names(issued.fullchain_pem) == set(names)
    assert dns01.live == set()
    # The wildcard's authorization offers only dns-01; the base name went over
    # http-01, the first preference. The DNS solver's wait ran once for the order.
    assert dns01.waits == 1


async def test_failed_validation_names_each_identifier_and_cleans_up(stack: Stack) -> None:
    names = ("bad1.x.test", "bad2.x.test")
    _, csr = make_csr(*names)
    async with (
        WrongAnswerSolver("127.0.0.1", stack.http_port) as wrong,
        stack.client() as c,
    ):
        await c.register()
        with pytest.raises(AcmeError) as err:
            await c.issue(names, {ChallengeType.HTTP_01: wrong}, csr)
        assert wrong.presented == 0
    failed = {(s.identifier or {}).get("value") for s in err.value.problem.subproblems}
    # Pebble marks the order invalid at the first failed authorization; the other
    # may still be pending or have failed too.
    assert failed and failed <= set(names)
    lines = describe_failures(err.value)
    assert all(line.split(":", 1)[0] in names for line in lines)
    assert err.value.problem.type == ProblemType.UNAUTHORIZED
