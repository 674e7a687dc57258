"""Key checks and CAA wired into the CA's rules: weak and compromised keys are refused,
CAA records naming another CA block issuance at validation and at a late finalize."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit.protocol import jose
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.clocks import SetClock as Clock
from acmekit_testkit.csr import make_csr
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.primes import next_prime, random_prime, rsa_key_from_primes


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 5, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
async def timed_ca(ca_config: ServerConfig, clock: Clock) -> AsyncIterator[Assembly]:
    assembly = assemble(ca_config, now=clock)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


@pytest.fixture
def tflow(timed_ca: Assembly, responder: Http01Responder) -> Flow:
    return Flow(RawAcme(timed_ca.app), responder)


def _fermat_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key whose primes are close: Fermat's method factors it at once."""
    p = random_prime(1024)
    return rsa_key_from_primes(p, next_prime(p + 2_000))


def _csr(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


async def _ready(flow: Flow, name: str) -> dict[str, object]:
    if not flow.kid:
        await flow.account()
    resp = await flow.order(name)
    await flow.solve(resp.json())
    order: dict[str, object] = (await flow.get(resp.header("location") or "")).json()
    order["url"] = resp.header("location") or ""
    return order


async def test_fermat_factorable_csr_key_is_refused(flow: Flow) -> None:
    order = await _ready(flow, "fermat.policy.test")
    csr = _csr(_fermat_key(), "fermat.policy.test")
    resp = await flow.acme.post(str(order["finalize"]), {"csr": jose.b64e(csr)}, flow.key, flow.kid)
    assert (resp.status, resp.problem_type) == (400, "badPublicKey")
    assert "Fermat" in resp.json()["detail"]


async def test_key_compromise_blocks_the_key(flow: Flow, acme: RawAcme) -> None:
    order = await _ready(flow, "compromised.policy.test")
    cert_key, csr = make_csr("compromised.policy.test")
    fin = await acme.post(str(order["finalize"]), {"csr": jose.b64e(csr)}, flow.key, flow.kid)
    pem = (await flow.get(fin.json()["certificate"])).body
    der = x509.load_pem_x509_certificates(pem)[0].public_bytes(serialization.Encoding.DER)
    url = f"{acme.base}/acme/revoke-cert"
    revoked = await acme.post(url, {"certificate": jose.b64e(der), "reason": 1}, cert_key)
    assert revoked.status == 200, revoked.body
    as_account = await acme.post(
        f"{acme.base}/acme/new-account", {"termsOfServiceAgreed": True}, cert_key
    )
    assert (as_account.status, as_account.problem_type) == (400, "badPublicKey")
    again = await _ready(flow, "compromised.policy.test")
    reuse = _csr(cert_key, "compromised.policy.test")
    refused = await acme.post(str(again["finalize"]), {"csr": jose.b64e(reuse)}, flow.key, flow.kid)
    assert (refused.status, refused.problem_type) == (400, "badPublicKey")
    assert "blocked" in refused.json()["detail"]


def _add_caa(dns: DnsServerHandle, host: str, value: str, tag: str = "issue") -> None:
    dns.post_sync("/add-caa", {"host": host, "policies": [{"tag": tag, "value": value}]})


def _zone(label: str) -> str:
    """A name of its own for each test run: the DNS server outlives the test."""
    return f"{label}-{secrets.token_hex(4)}.policy.test"


async def test_caa_naming_another_ca_blocks_validation(
    flow: Flow, dns_server: DnsServerHandle
) -> None:
    zone = _zone("caa-other")
    _add_caa(dns_server, f"{zone}.", "other-ca.example")
    await flow.account()
    resp = await flow.order(f"www.{zone}")
    await flow.solve(resp.json())
    order = (await flow.get(resp.header("location") or "")).json()
    assert order["status"] == "invalid"
    assert order["error"]["type"] == "urn:ietf:params:acme:error:caa"
    assert "other-ca.example" in order["error"]["detail"]


async def test_caa_naming_us_allows(flow: Flow, dns_server: DnsServerHandle) -> None:
    zone = _zone("caa-us")
    _add_caa(dns_server, f"{zone}.", "acmekit")
    _, order = await flow.issue(zone)
    assert order["status"] == "valid"


async def test_caa_is_checked_again_at_a_late_finalize(
    tflow: Flow, clock: Clock, dns_server: DnsServerHandle
) -> None:
    ok_zone, late_zone = _zone("caa-ok"), _zone("caa-late")
    fresh = await _ready(tflow, f"www.{ok_zone}")
    stale = await _ready(tflow, f"www.{late_zone}")
    _add_caa(dns_server, f"{ok_zone}.", "other-ca.example")
    _add_caa(dns_server, f"{late_zone}.", "other-ca.example")
    clock.t += timedelta(hours=1)
    ok = await tflow.finalize(str(fresh["url"]), (f"www.{ok_zone}",))
    assert ok.status == 200, ok.body  # checked an hour ago: still good
    clock.t += timedelta(hours=8)
    late = await tflow.finalize(str(stale["url"]), (f"www.{late_zone}",))
    assert (late.status, late.problem_type) == (403, "caa")
