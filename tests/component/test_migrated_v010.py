"""The CA and the fleet on databases that acmekit v0.1.0 made (tests/fixtures/v0.1.0),
upgraded on start: a certificate is issued, renewed with ARI's `replaces` and revoked;
a fleet site from v0.1.0 is renewed, with a new certificate from the CA, and deployed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from test_fleet_acme import Fleet, _verify

from acmekit import migrate
from acmekit.fleet.api import challenge_app
from acmekit.protocol import jose
from acmekit.server.ari import cert_id_of
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Flow, Http01Responder
from acmekit_testkit.databases import fresh_database
from acmekit_testkit.legacy import load_v010
from acmekit_testkit.tiers import BACKEND_PARAMS


@pytest.fixture(params=BACKEND_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The CA's v0.1.0 fixture, on both stores; the `ca` fixture upgrades it."""
    with fresh_database(request.param, tmp_path, "ca.db") as url:
        load_v010("ca", url)
        yield url


async def test_the_ca_issues_renews_and_revokes_on_an_upgraded_database(
    ca: Assembly, flow: Flow
) -> None:
    assert migrate.current(ca.store.engine, migrate.SERVER) == migrate.head(migrate.SERVER)
    assert ca.store.certificates.replacement("cert1") == "order3"  # v0.1.0's rows are there
    _, order = await flow.issue("renew.migrated.test", profile="shortlived")
    leaf = x509.load_pem_x509_certificates((await flow.get(order["certificate"])).body)[0]
    ari = await flow.acme.request("GET", f"{flow.acme.base}/acme/renewal-info/{cert_id_of(leaf)}")
    assert ari.status == 200 and "suggestedWindow" in ari.json()

    url = f"{flow.acme.base}/acme/new-order"
    idents = [{"type": "dns", "value": "renew.migrated.test"}]
    body = {"identifiers": idents, "replaces": str(cert_id_of(leaf))}
    renewal = await flow.acme.post(url, body, flow.key, flow.kid)
    assert renewal.status == 201, renewal.body
    await flow.solve(renewal.json())
    done = await flow.finalize(renewal.header("location") or "", ("renew.migrated.test",))
    assert done.status == 200, done.body
    again = await flow.acme.post(url, body, flow.key, flow.kid)
    assert again.status == 409 and again.problem_type == "alreadyReplaced"

    renewed = (await flow.get(done.json()["certificate"])).body
    new_leaf = x509.load_pem_x509_certificates(renewed)[0]
    revoke = {"certificate": jose.b64e(new_leaf.public_bytes(Encoding.DER)), "reason": 4}
    revoked = await flow.acme.post(f"{flow.acme.base}/acme/revoke-cert", revoke, flow.key, flow.kid)
    assert revoked.status == 200, revoked.body
    record = ca.store.certificates.certificate_by_serial(format(new_leaf.serial_number, "x"))
    assert record is not None and record.revocation_reason == 4


@pytest.fixture
async def v010_fleet(
    tmp_path: Path, ca: Assembly, responder: Http01Responder
) -> AsyncIterator[Fleet]:
    """A fleet over v0.1.0's inventory, answering http-01 where the CA looks."""
    load_v010("fleet", f"sqlite:///{tmp_path / 'fleet.db'}")
    port = responder.port
    await responder.stop()
    f = Fleet(tmp_path, ca)
    await f.client.register()
    runner = web.AppRunner(challenge_app(f.inventory), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f
    await runner.cleanup()
    await f.client.close()
    f.inventory.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_v010_fleet_site_renews_and_deploys(v010_fleet: Fleet, tmp_path: Path) -> None:
    f = v010_fleet
    shop = f.inventory.sites.site_by_name("shop.example.net")
    assert shop is not None and shop.current_version == 2
    assert f.inventory.sites.options(shop.id).backup
    assert f.inventory.sites.force_renewal(shop.id, f.now())
    await f.worker("w1").run_once()
    renewed = f.inventory.sites.site(shop.id)
    assert renewed is not None and renewed.current_version == 3, renewed
    leaf = _verify(f.root, tmp_path / "edge-a" / "shop.example.net" / "fullchain.pem")
    assert format(leaf.serial_number, "x") == f.inventory.sites.versions(shop.id)[-1].serial
