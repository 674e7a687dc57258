"""The CA reports its work at INFO, one line each with identifiers: every validation's
outcome and every issuance; never a token or a key authorization."""

from __future__ import annotations

import logging

import pytest
from cryptography import x509

from acmekit_testkit.acme_raw import Flow, RawAcme


def _info(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and r.name.startswith("acmekit.server")
    ]


async def test_validations_and_issuance_are_logged(
    flow: Flow, acme: RawAcme, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="acmekit")
    _, order = await flow.issue("logged.flow.test")
    leaf = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]
    failing = await flow.order("fails.logged.test")
    authz = (await flow.get(failing.json()["authorizations"][0])).json()
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    await acme.post(ch["url"], {}, flow.key, flow.kid)  # nothing served: 404
    await acme.app.authority.drain()

    lines = _info(caplog)
    account = flow.kid.rsplit("/", 1)[1]
    assert any(
        "http-01 for logged.flow.test" in line and f"(account {account}): valid" in line
        for line in lines
    ), lines
    serial = format(leaf.serial_number, "x")
    assert any(f"issued serial {serial} for logged.flow.test" in line for line in lines), lines
    refused = [line for line in lines if "fails.logged.test" in line]
    assert len(refused) == 1, lines
    assert refused[0].endswith("invalid (urn:ietf:params:acme:error:unauthorized)")
    secrets = [ch["token"], *flow.responder.tokens, *flow.responder.tokens.values()]
    assert not [s for s in secrets if s in caplog.text]
