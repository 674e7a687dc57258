"""Certificate profiles in-process: directory, selection, lifetimes, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography import x509

from acmekit.server.config import Profile, ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme


async def _order(flow: Flow, name: str, **extra: object) -> tuple[int, dict[str, object]]:
    kind = "ip" if name[0].isdigit() else "dns"
    body = {"identifiers": [{"type": kind, "value": name}], **extra}
    resp = await flow.acme.post(f"{flow.acme.base}/acme/new-order", body, flow.key, flow.kid)
    return resp.status, resp.json()


async def _lifetime(flow: Flow, name: str, profile: str | None) -> timedelta:
    await flow.account()
    extra = {} if profile is None else {"profile": profile}
    status, order = await _order(flow, name, **extra)
    assert status == 201, order
    assert order["profile"] == (profile or "classic")
    await flow.solve(order)
    url = str(order["finalize"]).removesuffix("/finalize")
    done = (await flow.finalize(url, (name,))).json()
    leaf = x509.load_pem_x509_certificates((await flow.get(done["certificate"])).body)[0]
    return leaf.not_valid_after_utc - leaf.not_valid_before_utc


async def test_directory_lists_profiles(acme: RawAcme) -> None:
    profiles = (await acme.directory())["meta"]["profiles"]
    assert set(profiles) == {"classic", "shortlived", "tlsserver"}
    assert all(isinstance(d, str) and d for d in profiles.values())


async def test_default_profile_is_classic_90_days(flow: Flow) -> None:
    assert await _lifetime(flow, "classic.profile.test", None) == timedelta(days=90)


async def test_shortlived_is_160_hours(flow: Flow) -> None:
    assert await _lifetime(flow, "short.profile.test", "shortlived") == timedelta(hours=160)


async def test_shortlived_order_and_authorization_lifetimes(flow: Flow) -> None:
    await flow.account()
    _, order = await _order(flow, "auth.profile.test", profile="shortlived")
    authz = (await flow.get(str(order["authorizations"][0]))).json()  # type: ignore[index]
    _, classic = await _order(flow, "auth.profile.test")
    assert classic["authorizations"] != order["authorizations"]  # not reused across profiles
    assert str(order["expires"]) < str(classic["expires"])
    assert authz["expires"] <= order["expires"]


async def test_unknown_profile(flow: Flow) -> None:
    await flow.account()
    status, doc = await _order(flow, "x.profile.test", profile="nosuch")
    assert status == 400 and doc["type"] == "urn:ietf:params:acme:error:invalidProfile"


@pytest.fixture
async def strict_ca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    config = replace(
        ca_config,
        profiles={
            "noip": Profile("DNS names only, 1 day", timedelta(days=1), ip_identifiers=False)
        },
    )
    assembly = assemble(config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def test_configured_profile_refuses_ip_and_sets_lifetime(
    strict_ca: Assembly, responder: Http01Responder
) -> None:
    flow = Flow(RawAcme(strict_ca.app), responder)
    await flow.account()
    status, doc = await _order(flow, "127.0.0.1", profile="noip")
    assert status == 400 and doc["type"] == "urn:ietf:params:acme:error:rejectedIdentifier"
    assert await _lifetime(flow, "day.profile.test", "noip") == timedelta(days=1)
