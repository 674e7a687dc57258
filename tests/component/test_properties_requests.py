"""Whatever JSON a client signs and sends to any resource, the CA answers with success
or a problem document (RFC 8555 §6.7); never a 500.

Properties over the whole request path in-process: the JWS is valid (a fresh nonce, the
account's key, the right URL), so what varies is the payload: arbitrary JSON, and objects
with the members the resources read (identifiers, csr, status, contact, certificate,
reason, ...) holding values of every type. Hypothesis runs in a worker thread; each
example's request runs on the test's event loop, where the CA lives.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acmekit.protocol import jose
from acmekit_testkit.acme_raw import Flow, Resp

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
identifier = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["dns", "ip"]) | json_values,
        "value": st.text(max_size=20) | json_values,
    }
)
members = {
    "identifiers": st.lists(identifier | json_values, max_size=3) | json_values,
    "csr": st.text(alphabet="AQIDBCDE-_xyz=", max_size=40) | json_values,
    # no "deactivated": it would end the account and with it the rest of the run
    "status": st.sampled_from(["valid", "revoked", "pending", ""]) | st.integers(),
    "contact": st.lists(st.text(max_size=20) | json_values, max_size=2) | json_values,
    "termsOfServiceAgreed": json_values,
    "onlyReturnExisting": json_values,
    "externalAccountBinding": json_values,
    "certificate": st.text(alphabet="AQIDBCDE-_", max_size=40) | json_values,
    "reason": st.integers(-2, 12) | json_values,
    "notBefore": st.text(max_size=25) | json_values,
    "notAfter": st.text(max_size=25) | json_values,
    "profile": json_values,
    "replaces": st.text(max_size=30) | json_values,
    "account": json_values,
    "oldKey": json_values,
}
payloads = json_values | st.fixed_dictionaries({}, optional=members)


async def test_any_signed_payload_to_any_resource_is_a_problem_or_success(flow: Flow) -> None:
    assert (await flow.account()).status == 201
    created = await flow.order("props.x.test")
    order = created.json()
    authz = (await flow.get(order["authorizations"][0])).json()
    base = flow.acme.base + "/acme/"
    urls = {
        "newAccount": base + "new-account",
        "newOrder": base + "new-order",
        "account": flow.kid,
        "order": created.header("location") or "",
        "finalize": order["finalize"],
        "authorization": order["authorizations"][0],
        "challenge": authz["challenges"][0]["url"],
        "revokeCert": base + "revoke-cert",
        "keyChange": base + "key-change",
    }
    loop = asyncio.get_running_loop()

    def post(url: str, payload: Any, by_jwk: bool) -> Resp:
        kid = None if by_jwk else flow.kid
        call = flow.acme.post(url, payload, flow.key, kid)
        return asyncio.run_coroutine_threadsafe(call, loop).result(timeout=60)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(urls)), payloads, st.booleans())
    def prop(resource: str, payload: Any, by_jwk: bool) -> None:
        resp = post(urls[resource], payload, by_jwk)
        assert resp.status < 500, (resource, payload, resp.status, resp.body[:300])
        if resp.status >= 400:
            assert resp.header("content-type") == "application/problem+json", resp.headers
            assert resp.json()["type"].startswith("urn:ietf:params:acme:error:")

    await loop.run_in_executor(None, prop)


async def test_any_body_to_any_resource_is_a_problem_or_success(flow: Flow) -> None:
    """Raw bodies: random bytes, JSON of any shape, and a real signed request with some
    of its characters changed."""
    assert (await flow.account()).status == 201
    base = flow.acme.base + "/acme/"
    urls = [base + "new-account", base + "new-order", flow.kid, base + "revoke-cert"]
    signed = jose.sign(flow.key, {"identifiers": []}, url=urls[1], nonce=await flow.acme.nonce())
    real = json.dumps(signed)
    loop = asyncio.get_running_loop()

    def send(url: str, body: bytes) -> Resp:
        call = flow.acme.request("POST", url, body, "application/jose+json")
        return asyncio.run_coroutine_threadsafe(call, loop).result(timeout=60)

    mutated = st.lists(
        st.tuples(st.integers(0, len(real) - 1), st.characters()), min_size=1, max_size=4
    ).map(lambda edits: _edit(real, edits))
    bodies = (
        st.binary(max_size=200)
        | json_values.map(lambda v: json.dumps(v).encode())
        # a lone surrogate among the edits becomes bytes that are not UTF-8: a body too
        | mutated.map(lambda t: t.encode("utf-8", "surrogatepass"))
    )

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(urls), bodies)
    def prop(url: str, body: bytes) -> None:
        resp = send(url, body)
        assert resp.status < 500, (url, body, resp.status, resp.body[:300])
        assert resp.status >= 400
        assert resp.header("content-type") == "application/problem+json", resp.headers

    await loop.run_in_executor(None, prop)


def _edit(text: str, edits: list[tuple[int, str]]) -> str:
    for at, char in edits:
        text = text[:at] + char + text[at + 1 :]
    return text
