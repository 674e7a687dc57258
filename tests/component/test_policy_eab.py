"""External Account Binding with keys kept in the database (and config keys still)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from acmekit.protocol import jose
from acmekit.server.admin import add_eab_key, revoke_eab_key
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import RawAcme, Resp, new_key

CONFIG_HMAC = b"k" * 32


@pytest.fixture
async def eab_ca(ca_config: ServerConfig) -> AsyncIterator[Assembly]:
    config = replace(ca_config, eab_required=True, eab_keys={"cfg": jose.b64e(CONFIG_HMAC)})
    assembly = assemble(config)
    yield assembly
    await assembly.app.close()
    assembly.store.engine.dispose()


async def _register(acme: RawAcme, kid: str | None, hmac_key: bytes) -> Resp:
    key = new_key()
    url = f"{acme.base}/acme/new-account"
    body: dict[str, object] = {"termsOfServiceAgreed": True}
    if kid is not None:
        body["externalAccountBinding"] = jose.eab_sign(key, kid, hmac_key, url)
    return await acme.post(url, body, key)


async def test_database_key_binds_once(eab_ca: Assembly) -> None:
    acme = RawAcme(eab_ca.app)
    key = add_eab_key(eab_ca.store, datetime.now(UTC), "customer-1")
    secret = jose.b64d(key.hmac_key)
    none = await _register(acme, None, b"")
    assert none.status == 400 and none.problem_type == "externalAccountRequired"
    wrong = await _register(acme, "customer-1", b"x" * 32)
    assert wrong.status == 403 and wrong.problem_type == "unauthorized"
    first = await _register(acme, "customer-1", secret)
    assert first.status == 201, first.body
    assert first.json()["externalAccountBinding"] == {"kid": "customer-1"}
    bound = eab_ca.store.accounts.eab_key("customer-1")
    assert bound is not None and bound.account_id
    assert (first.header("location") or "").endswith(bound.account_id)
    second = await _register(acme, "customer-1", secret)
    assert second.status == 403 and second.problem_type == "unauthorized"


async def test_revoked_and_unknown_keys(eab_ca: Assembly) -> None:
    acme = RawAcme(eab_ca.app)
    key = add_eab_key(eab_ca.store, datetime.now(UTC))
    revoke_eab_key(eab_ca.store, key.kid, datetime.now(UTC))
    revoked = await _register(acme, key.kid, jose.b64d(key.hmac_key))
    assert revoked.status == 403 and revoked.problem_type == "unauthorized"
    unknown = await _register(acme, "nobody", b"x" * 32)
    assert unknown.status == 403


async def test_config_keys_still_accepted(eab_ca: Assembly) -> None:
    acme = RawAcme(eab_ca.app)
    assert (await _register(acme, "cfg", CONFIG_HMAC)).status == 201
    assert (await _register(acme, "cfg", CONFIG_HMAC)).status == 403


async def test_binding_signed_for_another_url_is_refused(eab_ca: Assembly) -> None:
    """§7.3.4: the binding's url must be newAccount's, as the outer JWS's is."""
    acme, key = RawAcme(eab_ca.app), new_key()
    url = f"{acme.base}/acme/new-account"
    eab = jose.eab_sign(key, "cfg", CONFIG_HMAC, f"{acme.base}/acme/new-order")
    resp = await acme.post(url, {"termsOfServiceAgreed": True, "externalAccountBinding": eab}, key)
    assert (resp.status, resp.problem_type) == (403, "unauthorized")
    assert "url" in resp.json()["detail"]
