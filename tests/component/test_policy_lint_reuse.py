"""Lint before signing, the Baseline Requirements' schedule and per-profile authorization
reuse, in-process: the CA's real app, validator and store, with the clock injected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from acmekit.server.config import Profile, ServerConfig
from acmekit.server.crl import CrlApp
from acmekit.server.lint import Linter
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme


@dataclass
class Clock:
    """The CA's `now`, moved by the test."""

    at: datetime

    def now(self) -> datetime:
        return self.at


@pytest.fixture
async def make_ca(ca_config: ServerConfig) -> AsyncIterator[Callable[..., Assembly]]:
    made: list[Assembly] = []

    def make(clock: Clock, **profiles: Profile) -> Assembly:
        assembly = assemble(replace(ca_config, profiles=profiles), clock.now)
        made.append(assembly)
        return assembly

    yield make
    for assembly in made:
        await assembly.app.close()
        assembly.store.engine.dispose()


async def _leaf(flow: Flow, done: dict[str, object]) -> x509.Certificate:
    body = (await flow.get(str(done["certificate"]))).body
    return x509.load_pem_x509_certificates(body)[0]


async def test_a_normal_issuance_passes_lint(ca: Assembly, flow: Flow) -> None:
    _, done = await flow.issue("lint.flow.test")
    assert done["status"] == "valid"
    leaf = await _leaf(flow, done)
    report = Linter.for_config(ca.app.authority.config).lint(
        leaf.public_bytes(serialization.Encoding.DER)
    )
    assert report.errors == ()
    # Its caIssuers URL serves the intermediate from the CRL listener.
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    url = str(aia[0].access_location.value)
    assert url == f"{ca.crl.base_url}/issuer.der"
    status, ctype, body = await CrlApp(ca.crl)._answer("GET", "/issuer.der")
    assert (status, ctype) == (200, b"application/pkix-cert")
    assert x509.load_der_x509_certificate(body) == ca.issuer.intermediate_cert


async def test_tlsserver_issues_minimal_45_day_certificates(flow: Flow) -> None:
    _, done = await flow.issue("minimal.flow.test", profile="tlsserver")
    leaf = await _leaf(flow, done)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(days=45)
    assert leaf.subject == x509.Name([])
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_a_400_day_profile_is_refused_at_start(make_ca: Callable[..., Assembly]) -> None:
    clock = Clock(datetime(2025, 12, 1, tzinfo=UTC))
    with pytest.raises(ValueError) as err:
        make_ca(clock, long=Profile("too long", certificate_lifetime=timedelta(days=400)))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("profile 'long': certificate_lifetime 400 days")
    assert "398 days" in text


async def test_a_lifetime_the_schedule_forbids_since_start_is_refused_at_issuance(
    make_ca: Callable[..., Assembly], responder: Http01Responder
) -> None:
    # Started on the last day of the 200-day step with a 150-day profile: allowed then.
    clock = Clock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
    ca = make_ca(clock, long=Profile("150 days", certificate_lifetime=timedelta(days=150)))
    flow = Flow(RawAcme(ca.app), responder)
    await flow.account()
    resp = await flow.order("step.flow.test", profile="long")
    order_url = resp.header("location") or ""
    await flow.solve(resp.json())
    # Two days later the 100-day step is in force: the linter refuses, the key never signs.
    clock.at += timedelta(days=2)
    await flow.finalize(order_url, ("step.flow.test",))
    await ca.app.authority.drain()
    order = (await flow.get(order_url)).json()
    assert order["status"] == "invalid"
    assert "certificate" not in order
    assert order["error"]["type"] == "urn:ietf:params:acme:error:serverInternal"
    assert (
        "cabf.serverauth.certificate_validity_period_exceeds_100_days" in order["error"]["detail"]
    )


@pytest.mark.parametrize(
    ("profile", "reuse"),
    [("tlsserver", timedelta(hours=7)), ("tenday", timedelta(days=10))],
)
async def test_an_authorization_older_than_its_profile_reuse_is_not_reused(
    make_ca: Callable[..., Assembly],
    responder: Http01Responder,
    profile: str,
    reuse: timedelta,
) -> None:
    clock = Clock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    tenday = Profile(
        "10-day reuse",
        timedelta(days=45),
        valid_authz_lifetime=timedelta(days=30),
        authz_reuse=reuse,
    )
    ca = make_ca(clock, tenday=tenday)
    flow = Flow(RawAcme(ca.app), responder)
    await flow.account()
    first = (await flow.order("reuse.flow.test", profile=profile)).json()
    await flow.solve(first)
    # Within the reuse period: the same, valid authorization.
    clock.at += reuse - timedelta(minutes=1)
    again = (await flow.order("reuse.flow.test", profile=profile)).json()
    assert again["authorizations"] == first["authorizations"]
    assert again["status"] == "ready"
    # Past it (the authorization itself still valid): a fresh one to validate.
    clock.at += timedelta(minutes=2)
    authz = (await flow.get(first["authorizations"][0])).json()
    assert authz["status"] == "valid"
    later = (await flow.order("reuse.flow.test", profile=profile)).json()
    assert later["authorizations"] != first["authorizations"]
    assert later["status"] == "pending"
