"""The CA in-process with its intermediate's key in a SoftHSM2 token: a revocation made
while the token is away is answered and stored at once, its CRL shard is signed once the
token is back, and a CRL that cannot be signed yet is a 503, not a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from acmekit.protocol import jose
from acmekit.server.ca import create_external_hierarchy
from acmekit.server.config import HsmSettings, ServerConfig
from acmekit.server.crl import CrlApp, shard_of
from acmekit.server.hsm import TokenAddress, generate_key
from acmekit.server.run import Assembly, assemble
from acmekit.server.signing import SignerUnavailable
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme
from acmekit_testkit.softhsm import SoftHsm, softhsm_token


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    hsm = softhsm_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    pkcs11.lib(hsm.module).reinitialize()  # this process may have seen another token
    return hsm


@pytest.fixture
async def hsm_ca(ca_config: ServerConfig, token: SoftHsm) -> AsyncIterator[Assembly]:
    where = TokenAddress(token.module, token.label, "intermediate")
    public = generate_key(where, token.pin, "ec256")
    state = ca_config.state_dir
    create_external_hierarchy(state, state.parent / "offline-root.key", public, datetime.now(UTC))
    settings = HsmSettings(token.module, token.label, "intermediate", pin_env="UNUSED")
    assembly = assemble(replace(ca_config, hsm=settings), hsm_pin=token.pin)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _get_crl(app: CrlApp, shard: int) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": f"/crl/{shard}.crl"}
    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def test_a_revocation_while_the_token_is_away_reaches_its_crl_once_back(
    hsm_ca: Assembly, token: SoftHsm, responder: Http01Responder
) -> None:
    flow = Flow(RawAcme(hsm_ca.app), responder)
    _, order = await flow.issue("gone.hsm.test")
    cert = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]
    shards = hsm_ca.crl.settings.shards
    shard = shard_of(cert.serial_number, shards)
    other = (shard + 1) % shards
    before = hsm_ca.crl.regenerate(shard)
    crls = CrlApp(hsm_ca.crl)

    with token.removed():
        body = {"certificate": jose.b64e(cert.public_bytes(Encoding.DER)), "reason": 1}
        url = f"{flow.acme.base}/acme/revoke-cert"
        revoked = await flow.acme.post(url, body, flow.key, flow.kid)
        # The revocation is the subscriber's business and is done; the CRL waits.
        assert revoked.status == 200, revoked.body
        record = hsm_ca.store.certificates.certificate_by_serial(format(cert.serial_number, "x"))
        assert record is not None and record.revoked_at is not None
        stored = hsm_ca.store.certificates.crl(shard)
        assert stored is not None and stored.number == before.number
        # A shard with no CRL yet cannot be signed now: try again later.
        assert hsm_ca.store.certificates.crl(other) is None
        assert await _get_crl(crls, other) == (503, b"CRL not available yet; try again\n")
        assert (await _get_crl(crls, shard))[0] == 200  # what was signed is still served

    # Housekeeping's rounds, the token back: the key is looked for again at most once a
    # second, so a round may still find it missing, as a round during the absence did.
    for _ in range(50):
        try:
            hsm_ca.crl.refresh()
            break
        except SignerUnavailable:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("the token is back but CRLs are still not signed")
    status, der = await _get_crl(crls, shard)
    assert status == 200
    crl = x509.load_der_x509_crl(der)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == before.number + 1
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert crl.is_signature_valid(hsm_ca.issuer.intermediate_cert.public_key())  # type: ignore[arg-type]
    assert (await _get_crl(crls, other))[0] == 200
