"""An EAB key binds one account (RFC 8555 §7.3.4), whether it comes from the
configuration file or from `acmekit server eab add`, when newAccount requests that
carry it reach two CA processes on one database at once. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from acmekit.protocol import jose
from acmekit.protocol.messages import AccountStatus
from acmekit.server.admin import add_eab_key
from acmekit.server.config import ServerConfig
from acmekit.server.records import AccountRecord
from acmekit.server.run import assemble
from acmekit.server.store import Store
from acmekit_testkit.acme_raw import RawAcme, new_key

HMAC = b"h" * 32
KIDS = [f"cfg-{n}" for n in range(10)]
ROUNDS = 3  # requests per kid from each of the two processes: 6 a kid


def _process(
    config: ServerConfig,
    secrets: dict[str, bytes],
    start: threading.Barrier,
    out: list[tuple[str, int]],
) -> None:
    """One CA (its own store and app, as a process has), registering a new account
    key with each kid in turn; each request sent when the other CA sends its own."""

    async def run() -> None:
        assembly = assemble(config)
        acme = RawAcme(assembly.app)
        url = f"{acme.base}/acme/new-account"
        try:
            for kid in [k for k in secrets for _ in range(ROUNDS)]:
                key = new_key()
                payload = {
                    "termsOfServiceAgreed": True,
                    "externalAccountBinding": jose.eab_sign(key, kid, secrets[kid], url),
                }
                signed = jose.sign(key, payload, url=url, nonce=await acme.nonce())
                start.wait(timeout=60)
                body = json.dumps(signed).encode()
                resp = await acme.request("POST", url, body, "application/jose+json")
                out.append((kid, resp.status))
        finally:
            await assembly.app.close()
            assembly.store.engine.dispose()

    asyncio.run(run())


def _register_from_two_processes(config: ServerConfig, secrets: dict[str, bytes]) -> Counter[str]:
    """The kids that got a 201, each as often as it got one."""
    first = assemble(config)  # the database made and upgraded before the two start
    asyncio.run(first.app.close())
    first.store.engine.dispose()
    start, out = threading.Barrier(2), list[tuple[str, int]]()
    threads = [
        threading.Thread(target=_process, args=(config, secrets, start, out)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive()
    assert len(out) == 2 * ROUNDS * len(secrets)
    assert {status for _, status in out} <= {201, 403}
    return Counter(kid for kid, status in out if status == 201)


def test_each_key_binds_one_account_across_processes(ca_config: ServerConfig) -> None:
    """Keys of both sources, the configuration file's and the database's, at once."""
    config = replace(ca_config, eab_required=True, eab_keys={kid: jose.b64e(HMAC) for kid in KIDS})
    store = Store.from_url(config.db)
    try:
        added = [add_eab_key(store, datetime.now(UTC), f"db-{n}") for n in range(4)]
    finally:
        store.engine.dispose()
    secrets = dict.fromkeys(KIDS, HMAC) | {k.kid: jose.b64d(k.hmac_key) for k in added}
    created = _register_from_two_processes(config, secrets)
    assert created == Counter(secrets.keys())
    store = Store.from_url(config.db)
    try:
        bound = {k.kid: k.account_id for k in store.accounts.eab_keys()}
        assert sorted(bound) == sorted(secrets) and all(bound.values())
    finally:
        store.engine.dispose()


def _account(n: int, kid: str | None, thumb: str | None = None) -> AccountRecord:
    return AccountRecord(
        id=f"acct-{n}",
        thumbprint=thumb or f"thumb-{n}",
        jwk={"kty": "EC", "n": n},
        contact=(),
        status=AccountStatus.VALID,
        created=datetime(2026, 6, 1, tzinfo=UTC),
        eab_kid=kid,
    )


def test_a_binding_lives_and_dies_with_its_account(db_url: str) -> None:
    """The key is bound in the account's transaction: an account that is not inserted
    (its key registered first by another request) leaves the key free."""
    store = Store.from_url(db_url)
    try:
        accounts = store.accounts
        assert accounts.add_bound_account(_account(1, "k"), "c2VjcmV0") == _account(1, "k")
        assert accounts.add_bound_account(_account(2, "k"), "c2VjcmV0") is None
        same_key = accounts.add_bound_account(_account(3, "other", "thumb-1"), "c2VjcmV0")
        assert same_key == _account(1, "k")  # the account registered first, unbound "other"
        kept = {k.kid: k.account_id for k in accounts.eab_keys()}
        assert kept == {"k": "acct-1"}
        assert accounts.add_bound_account(_account(4, "other"), "c2VjcmV0") is not None
        assert sorted(str(k.account_id) for k in accounts.eab_keys()) == ["acct-1", "acct-4"]
    finally:
        store.engine.dispose()
