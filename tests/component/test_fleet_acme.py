"""The fleet against our CA in-process: a site added through the API gets a certificate
over ACME (http-01 answered by the fleet's own responder on loopback, validated for
real by the CA), deployed to two edge directories; a forced renewal deploys a new
serial; removal takes it off the edges; a worker that dies mid-order is finished by
another; a site's renewal time lies inside the window the CA's renewalInfo gives."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from acmekit.client import Client
from acmekit.client.resources import RenewalInfo
from acmekit.client.transport import AsgiTransport
from acmekit.clock import SystemClock
from acmekit.fleet.acme import AcmeIssuer, DbHttpSolver, account_key
from acmekit.fleet.api import api_app, challenge_app
from acmekit.fleet.deploy import DirectoryDeployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.issuer import OrderRequest, OrderStarted
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import ChallengeMethod, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol.ari import cert_id_of
from acmekit.protocol.messages import ChallengeType, OrderStatus
from acmekit.server.admin import move_ari_window
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Http01Responder

DIRECTORY = "https://ca.test/directory"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The CA on SQLite only here (its PostgreSQL flows are tested elsewhere)."""
    return f"sqlite:///{tmp_path / 'ca.db'}"


class Fleet:
    def __init__(self, tmp_path: Path, ca: Assembly) -> None:
        self.clock = SystemClock()
        self.inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
        self.metrics = FleetMetrics()
        self.edges = [
            DirectoryDeployer(tmp_path / "edge-a"),
            DirectoryDeployer(tmp_path / "edge-b", f"touch {tmp_path}/reloaded-b"),
        ]
        self.client = Client(
            DIRECTORY,
            account_key(self.inventory),
            transport=AsgiTransport(ca.app),
            clock=self.clock,
        )
        solver = DbHttpSolver(self.inventory, self.now)
        self.issuer = AcmeIssuer(self.client, {ChallengeType.HTTP_01: solver}, "acmekit-test")
        self.root = tmp_path / "ca" / "root.pem"

    def now(self) -> int:
        return to_us(self.clock.now())

    def worker(self, owner: str, issuer: AcmeIssuer | None = None) -> Worker:
        config = WorkerConfig(owner=owner)
        return Worker(
            self.inventory, issuer or self.issuer, self.edges, self.clock, config, self.metrics
        )


@pytest.fixture
async def fleet(
    tmp_path: Path, ca: Assembly, responder: Http01Responder
) -> AsyncIterator[tuple[Fleet, str]]:
    # The CA validates http-01 on the responder fixture's port: the fleet answers there.
    port = responder.port
    await responder.stop()
    f = Fleet(tmp_path, ca)
    await f.client.register()
    runners = []
    for app, p in ((challenge_app(f.inventory), port), (api_app(f.inventory, f.metrics, f.now), 0)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", p).start()
        runners.append(runner)
    api_port = runners[1].addresses[0][1]
    yield f, f"http://127.0.0.1:{api_port}"
    for runner in runners:
        await runner.cleanup()
    await f.client.close()
    f.inventory.close()


def _verify(root_pem: Path, fullchain: Path) -> x509.Certificate:
    """The chain verifies to the CA's root, signature by signature."""
    chain = x509.load_pem_x509_certificates(fullchain.read_bytes())
    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    for cert, issuer in zip(chain, [*chain[1:], root], strict=True):
        cert.verify_directly_issued_by(issuer)
    return chain[0]


def _names(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


async def test_site_is_issued_deployed_renewed_and_removed(
    fleet: tuple[Fleet, str], tmp_path: Path
) -> None:
    f, api = fleet
    worker = f.worker("w1")
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{api}/domains", json={"names": ["shop.fleet.test", "www.shop.fleet.test"]}
        )
        assert resp.status == 201
        site_id = (await resp.json())["id"]
        assert (await (await http.get(f"{api}/domains/{site_id}")).json())["state"] == "pending"

        assert await worker.run_once() == 1
        doc = await (await http.get(f"{api}/domains/{site_id}")).json()
        assert doc["state"] == "active" and doc["certificate"]["version"] == 1
        first_serial = doc["certificate"]["serial"]
        assert all(d["version"] == 1 for d in doc["deployments"].values())
        for edge in ("edge-a", "edge-b"):
            site_dir = tmp_path / edge / "shop.fleet.test"
            leaf = _verify(f.root, site_dir / "fullchain.pem")
            assert _names(leaf) == ["shop.fleet.test", "www.shop.fleet.test"]
            assert format(leaf.serial_number, "x") == first_serial
            assert (site_dir / "privkey.pem").stat().st_mode & 0o777 == 0o600
            private = load_pem_private_key((site_dir / "privkey.pem").read_bytes(), None)
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            assert private.public_key() == leaf.public_key()
        assert (tmp_path / "reloaded-b").exists()
        assert await worker.run_once() == 0  # nothing due now

        resp = await http.post(f"{api}/domains/{site_id}/renew")
        assert resp.status == 202
        assert await worker.run_once() == 1
        doc = await (await http.get(f"{api}/domains/{site_id}")).json()
        assert doc["certificate"]["version"] == 2
        assert doc["certificate"]["serial"] != first_serial
        for edge in ("edge-a", "edge-b"):
            leaf = _verify(f.root, tmp_path / edge / "shop.fleet.test" / "fullchain.pem")
            assert format(leaf.serial_number, "x") == doc["certificate"]["serial"]

        listed = await (await http.get(f"{api}/domains?state=active")).json()
        assert [d["id"] for d in listed["domains"]] == [site_id]
        metrics = await (await http.get(f"{api}/metrics")).text()
        assert 'acmekit_fleet_sites{state="active"} 1' in metrics
        assert 'acmekit_fleet_issuances_total{ca="acmekit-test",outcome="success"} 2' in metrics
        assert 'acmekit_fleet_issuance_seconds_count{ca="acmekit-test"} 2' in metrics

        assert (await http.delete(f"{api}/domains/{site_id}")).status == 202
        assert await worker.run_once() == 1
        doc = await (await http.get(f"{api}/domains/{site_id}")).json()
        assert doc["state"] == "removed" and doc["next_action_at"] is None
        assert not (tmp_path / "edge-a" / "shop.fleet.test").exists()
        assert not (tmp_path / "edge-b" / "shop.fleet.test").exists()
        assert (await http.get(f"{api}/domains/nope")).status == 404
        bad = await http.post(f"{api}/domains", json={"names": ["not a name"]})
        assert bad.status == 400 and bad.content_type == "application/problem+json"


class LeaseLater(SystemClock):
    """Real time, seen from just after the dead worker's lease ran out."""

    def now(self) -> datetime:
        return super().now() + timedelta(microseconds=WorkerConfig().lease + 1)


class DiesAfterOrder:
    """Runs the real issuer until the order exists, then dies (as a killed process)."""

    name = "acmekit-test"

    def __init__(self, real: AcmeIssuer) -> None:
        self.real = real

    async def issue(self, request: OrderRequest, started: OrderStarted) -> str:
        async def then_die(url: str) -> None:
            await started(url)
            raise asyncio.CancelledError

        return await self.real.issue(request, then_die)


async def test_a_worker_dying_mid_renewal_is_finished_by_another(
    fleet: tuple[Fleet, str], tmp_path: Path
) -> None:
    f, _ = fleet
    site = f.inventory.sites.add_site(("resume.fleet.test",), ChallengeMethod.HTTP_01, f.now())
    assert await f.worker("w1").run_once() == 1
    assert f.inventory.sites.force_renewal(site.id, f.now())
    dying = f.worker("w2", DiesAfterOrder(f.issuer))  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await dying.run_once()
    held = f.inventory.sites.site(site.id)
    assert held is not None and held.order_url is not None and held.lease_owner == "w2"
    assert held.state == SiteState.ISSUING
    # Until the lease expires nobody else touches it; after, w3 resumes the same order
    # (a new one would be refused: the old certificate's replacement is claimed).
    assert await f.worker("w3").run_once() == 0
    later = Worker(f.inventory, f.issuer, f.edges, LeaseLater(), WorkerConfig(owner="w3"))
    assert await later.run_once() == 1
    done = f.inventory.sites.site(site.id)
    assert done is not None and done.state == SiteState.ACTIVE and done.current_version == 2
    assert [v.version for v in f.inventory.sites.versions(site.id)] == [1, 2]
    leaf = _verify(f.root, tmp_path / "edge-a" / "resume.fleet.test" / "fullchain.pem")
    assert format(leaf.serial_number, "x") == f.inventory.sites.versions(site.id)[1].serial


async def test_a_renewal_whose_claim_another_order_holds_is_ordered_without_it(
    fleet: tuple[Fleet, str],
) -> None:
    """The old certificate's replacement is held by an order the inventory does not know
    (as after a restore from a backup): the renewal is ordered again without `replaces`
    (RFC 9773 §5) rather than refused with alreadyReplaced on every attempt."""
    f, _ = fleet
    site = f.inventory.sites.add_site(("claimed.fleet.test",), ChallengeMethod.HTTP_01, f.now())
    assert await f.worker("w1").run_once() == 1
    (first,) = f.inventory.sites.versions(site.id)
    leaf = x509.load_pem_x509_certificate(first.fullchain_pem.encode())
    await f.client.new_order(["claimed.fleet.test"], replaces=str(cert_id_of(leaf)))
    assert f.inventory.sites.force_renewal(site.id, f.now())
    assert await f.worker("w1").run_once() == 1
    done = f.inventory.sites.site(site.id)
    assert done is not None and done.state == SiteState.ACTIVE and done.current_version == 2


class ChecksDue(SystemClock):
    """Real time, seen from just after the next renewal-information check is due."""

    def now(self) -> datetime:
        return super().now() + timedelta(microseconds=WorkerConfig().ari_interval + 1)


def _inside(at: int | None, info: RenewalInfo) -> bool:
    return at is not None and to_us(info.start) <= at < to_us(info.end)


async def test_renewal_follows_the_window_the_ca_gives(
    fleet: tuple[Fleet, str], ca: Assembly
) -> None:
    f, _ = fleet
    site = f.inventory.sites.add_site(("ari.fleet.test",), ChallengeMethod.HTTP_01, f.now())
    assert await f.worker("w1").run_once() == 1
    current = f.inventory.sites.versions(site.id)[0]
    leaf = x509.load_pem_x509_certificates(current.fullchain_pem.encode())[0]
    # Asked right after issuance: the CA's window (two thirds of the lifetime, a day
    # either side) decides, not the fleet's own last third.
    info = await f.client.renewal_info(leaf)
    assert info is not None
    fresh = f.inventory.sites.site(site.id)
    assert fresh is not None and _inside(fresh.renew_at, info)
    assert fresh.next_action_at is not None and fresh.next_action_at <= fresh.renew_at
    assert await f.worker("w1").run_once() == 0  # nothing due now

    # The operator moves the window later than the lifetime rule would renew: at the
    # next check the site's renewal moves into it.
    later = current.not_before + (current.not_after - current.not_before) * 9 // 10
    start = datetime.fromtimestamp(later / 1_000_000, tz=leaf.not_valid_after_utc.tzinfo)
    move_ari_window(ca.store, current.serial, start)
    moved = await f.client.renewal_info(leaf)
    assert moved is not None and moved.start == start
    checker = Worker(f.inventory, f.issuer, f.edges, ChecksDue(), WorkerConfig(owner="w2"))
    assert await checker.run_once() == 1
    after = f.inventory.sites.site(site.id)
    assert after is not None and _inside(after.renew_at, moved)
    assert after.renew_at is not None and fresh.renew_at is not None
    assert after.renew_at > fresh.renew_at and after.current_version == 1


async def test_issuance_and_each_deployment_are_logged(
    fleet: tuple[Fleet, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f, _ = fleet
    caplog.set_level(logging.INFO, logger="acmekit")
    site = f.inventory.sites.add_site(("logged.fleet.test",), ChallengeMethod.HTTP_01, f.now())
    assert await f.worker("w1").run_once() == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "acmekit.fleet.worker"]
    issued = [line for line in lines if f"site {site.id}: issued version 1" in line]
    assert len(issued) == 1 and issued[0].endswith("for logged.fleet.test"), lines
    for edge in ("edge-a", "edge-b"):
        assert any(f"version 1 deployed to edge {tmp_path / edge}" in line for line in lines)
    key = (tmp_path / "edge-a" / "logged.fleet.test" / "privkey.pem").read_text()
    assert key.splitlines()[1] not in caplog.text


async def test_finalize_of_an_order_not_ready_polls_it_instead(
    fleet: tuple[Fleet, str],
) -> None:
    """The issuer finalizes without polling once its authorizations are valid; were the
    CA to find the order not ready after all (orderNotReady, RFC 8555 §7.4), the order
    is polled and left as it is, not finalized blindly."""
    f, _ = fleet
    order = await f.client.new_order(["notready.fleet.test"])
    assert order.status == OrderStatus.PENDING
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("notready.fleet.test")]), False)
        .sign(key, hashes.SHA256())
    )
    ready = replace(order, status=OrderStatus.READY)
    after = await f.issuer._finalize(ready, csr.public_bytes(serialization.Encoding.DER))
    assert after.status == OrderStatus.PENDING and after.certificate is None
