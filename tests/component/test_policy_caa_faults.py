"""A CAA lookup that fails, seen from the client: the CA refuses the name, never reading
the failure as "no CAA records". The name's http-01 check passes (its A record resolves);
only its CAA questions get SERVFAIL from the CA's resolver."""

from __future__ import annotations

import dataclasses

from acmekit.server.config import ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.stubdns import scripted_resolver


async def test_caa_servfail_leaves_the_challenge_and_order_invalid(
    ca_config: ServerConfig, responder: Http01Responder
) -> None:
    async with scripted_resolver() as ((host, port), dns):
        config = dataclasses.replace(ca_config, dns_resolver=f"{host}:{port}")
        ca = assemble(config)
        try:
            flow = Flow(RawAcme(ca.app), responder)
            await flow.account()
            created = await flow.order("www.failing.test")
            await flow.solve(created.json())
            order = (await flow.get(created.header("location") or "")).json()
            authz = (await flow.get(order["authorizations"][0])).json()
        finally:
            await ca.app.close()
            ca.store.engine.dispose()
    assert "www.failing.test." in dns.asked
    assert order["status"] == "invalid"
    assert authz["status"] == "invalid"
    error = next(c for c in authz["challenges"] if c["type"] == "http-01")["error"]
    assert error["type"] == "urn:ietf:params:acme:error:dns"
    assert "could not check CAA records for www.failing.test" in error["detail"]
    assert error["identifier"] == {"type": "dns", "value": "www.failing.test"}
