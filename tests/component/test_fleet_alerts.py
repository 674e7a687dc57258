"""The alert hook, against our CA in-process: a site whose http-01 validation keeps
failing (the CA's validator gets 404 from the fleet's responder on loopback) shows as
failing with the CA's last problem, and the hook runs exactly once, with the site and
the problem in its environment; retries of a failing site do not run it again. After
the site recovers and then fails again, the hook runs a second time. The hook exits
non-zero: that is logged and the worker carries on."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from acmekit.client import Client
from acmekit.client.transport import AsgiTransport
from acmekit.clock import SystemClock
from acmekit.fleet.acme import AcmeIssuer, DbHttpSolver, account_key
from acmekit.fleet.alerts import ShellAlertHook
from acmekit.fleet.deploy import DirectoryDeployer
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import ChallengeMethod, Site, SiteState, to_us
from acmekit.fleet.worker import Worker, WorkerConfig
from acmekit.protocol.messages import ChallengeType
from acmekit.server.config import RateLimits, ServerConfig
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Http01Responder

DIRECTORY = "https://ca.test/directory"
NAMES = ("alert.fleet.test", "www.alert.fleet.test")
HOOK = """#!/bin/sh
{
  echo "FLEET_SITE_ID=$FLEET_SITE_ID"
  echo "FLEET_SITE_NAMES=$FLEET_SITE_NAMES"
  echo "FLEET_FAILURES=$FLEET_FAILURES"
  echo "FLEET_PROBLEM_TYPE=$FLEET_PROBLEM_TYPE"
  printf 'FLEET_PROBLEM_DETAIL=%s\\n' "$(printf '%s' "$FLEET_PROBLEM_DETAIL" | tr '\\n' ' ')"
  echo "--"
} >> "$1"
exit 3
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ca.db'}"


@pytest.fixture
def ca_config(ca_config: ServerConfig) -> ServerConfig:
    """No limit on failed validations: this test fails validation on purpose, often."""
    return dataclasses.replace(ca_config, rate_limits=RateLimits(enabled=False))


class MovableClock(SystemClock):
    """Real time plus an offset the test moves forward, past each retry's back-off."""

    offset = timedelta()

    def now(self) -> datetime:
        return super().now() + self.offset


class Responder:
    """The fleet's http-01 answers on the port the CA validates, or 404 while down."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.up = False

    async def serve(self, request: web.Request) -> web.Response:
        answer = (
            self.inventory.challenges.key_authorization(request.match_info["token"])
            if self.up
            else None
        )
        return web.Response(status=404) if answer is None else web.Response(text=answer)


@pytest.fixture
async def responder_runner(
    responder: Http01Responder, tmp_path: Path
) -> AsyncIterator[tuple[Responder, Inventory, int]]:
    port = responder.port
    await responder.stop()
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    ours = Responder(inventory)
    app = web.Application()
    app.router.add_get("/.well-known/acme-challenge/{token}", ours.serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield ours, inventory, port
    await runner.cleanup()
    inventory.close()


def _records(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    chunks = path.read_text().split("--\n")
    return [
        dict(line.split("=", 1) for line in chunk.splitlines()) for chunk in chunks if chunk.strip()
    ]


def _site(inventory: Inventory, site_id: str) -> Site:
    found = inventory.sites.site(site_id)
    assert found is not None
    return found


async def test_a_failing_site_runs_the_alert_hook_once_per_run_of_failures(
    ca: Assembly,
    responder_runner: tuple[Responder, Inventory, int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    responder, inventory, _ = responder_runner
    clock = MovableClock()
    client = Client(
        DIRECTORY, account_key(inventory), transport=AsgiTransport(ca.app), clock=SystemClock()
    )
    await client.register()
    solver = DbHttpSolver(inventory, lambda: to_us(clock.now()))
    issuer = AcmeIssuer(client, {ChallengeType.HTTP_01: solver}, "acmekit-test")
    script = tmp_path / "hook.sh"
    script.write_text(HOOK)
    out = tmp_path / "alerts.txt"
    worker = Worker(
        inventory,
        issuer,
        [DirectoryDeployer(tmp_path / "edge")],
        clock,
        WorkerConfig(owner="w1"),
        alert=ShellAlertHook(f"sh {script} {out}"),
    )
    site = inventory.sites.add_site(NAMES, ChallengeMethod.HTTP_01, to_us(clock.now()))

    async def attempt() -> Site:
        clock.offset += timedelta(hours=7)  # past the longest back-off
        assert await worker.run_once() == 1
        return _site(inventory, site.id)

    states = []
    for _ in range(4):
        states.append((await attempt()).state)
    assert states == [SiteState.PENDING, SiteState.PENDING, SiteState.FAILING, SiteState.FAILING]
    failing = _site(inventory, site.id)
    assert failing.failure_count == 4 and failing.last_problem is not None
    problem = failing.last_problem
    assert problem["type"].startswith("urn:ietf:params:acme:error:")
    assert problem["detail"]
    first = _records(out)
    assert len(first) == 1, first
    assert first[0] == {
        "FLEET_SITE_ID": site.id,
        "FLEET_SITE_NAMES": " ".join(NAMES),
        "FLEET_FAILURES": "3",
        "FLEET_PROBLEM_TYPE": problem["type"],
        "FLEET_PROBLEM_DETAIL": first[0]["FLEET_PROBLEM_DETAIL"],
    }
    assert first[0]["FLEET_PROBLEM_DETAIL"].strip() != ""
    assert "alert hook exited 3" in caplog.text  # logged; the worker went on
    # The CA's detail quotes the challenge URL; the fleet logs the failure without its token.
    token = re.search(r"acme-challenge/([A-Za-z0-9_-]+)", problem["detail"])
    assert token is not None and f"site {site.id}: issuance at" in caplog.text
    assert token[1] not in caplog.text

    responder.up = True
    recovered = await attempt()
    assert recovered.state == SiteState.ACTIVE and recovered.failure_count == 0
    assert recovered.current_version == 1 and recovered.last_problem is None
    assert len(_records(out)) == 1

    # The account's valid authorizations would let a renewal through without validation:
    # deactivate them (RFC 8555 §7.5.2), so the renewal must validate, and fails.
    reused = await client.new_order(NAMES)
    for authz in await client.authorizations(reused):
        await client.deactivate_authorization(authz)
    assert inventory.sites.force_renewal(site.id, to_us(clock.now()))
    responder.up = False
    for _ in range(3):
        again = await attempt()
    assert again.state == SiteState.FAILING and again.current_version == 1
    second = _records(out)
    assert len(second) == 2, second
    assert second[1]["FLEET_SITE_ID"] == site.id and second[1]["FLEET_FAILURES"] == "3"
    assert second[1]["FLEET_PROBLEM_TYPE"] == (again.last_problem or {})["type"]
    await client.close()
