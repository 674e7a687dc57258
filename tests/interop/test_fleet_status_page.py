"""The fleet's status page, loaded by Debian's Chromium (headless) from a loopback server.

The inventory holds sites in every state (one failing with a problem whose text looks
like markup); the page is served by the fleet's API app on 127.0.0.1 and the DOM that
Chromium built is read back with `--dump-dom`: counts, the soonest expiries in order,
the failure with its last error shown as text (escaped, not run), and the CA rows.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import web

from acmekit.fleet.api import api_app
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics
from acmekit.fleet.model import CertVersion, ChallengeMethod, SiteState
from acmekit.fleet.planner import DAY, MINUTE
from acmekit.fleet.repos.sites import SiteChange

pytestmark = pytest.mark.interop

NOW = 1_900_000_000_000_000
CA_A = "https://ca-a.fleet.test/directory"
CA_B = "https://ca-b.fleet.test/directory"
EVIL = "<script>document.title='owned'</script> & <b>bold</b>"

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-breakpad", "--disable-domain-reliability", "--no-default-browser-check",
    # No name resolution at all: the page is fetched from a loopback address.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]  # fmt: skip


def _certify(inventory: Inventory, name: str, days_left: int, ca: str) -> str:
    site = inventory.sites.add_site((name, f"www.{name}"), ChallengeMethod.HTTP_01, NOW)
    assert [s.id for s in inventory.sites.lease_due("w", NOW, MINUTE, 9)] == [site.id]
    not_after = NOW + days_left * DAY
    version = CertVersion(site.id, 1, f"{days_left:04x}", not_after - 90 * DAY, not_after,
                          "CHAIN", "KEY", NOW, ca)  # fmt: skip
    assert inventory.sites.store_version("w", version, not_after - 30 * DAY)
    # deployed to every edge: what the worker then records
    assert inventory.sites.update_leased(site.id, "w", SiteChange(state=SiteState.ACTIVE))
    assert inventory.sites.release(site.id, "w", NOW + 2 * DAY, NOW)
    return site.id


def _fail(inventory: Inventory, name: str, count: int, state: SiteState, detail: str) -> None:
    site = inventory.sites.add_site((name,), ChallengeMethod.HTTP_01, NOW)
    assert [s.id for s in inventory.sites.lease_due("w", NOW, MINUTE, 9)] == [site.id]
    problem = {"type": "urn:ietf:params:acme:error:caa", "detail": detail}
    change = SiteChange(failure_count=count, last_problem=problem, state=state)
    assert inventory.sites.update_leased(site.id, "w", change)
    assert inventory.sites.release(site.id, "w", NOW + 10 * MINUTE, NOW)


def populate(inventory: Inventory, metrics: FleetMetrics) -> None:
    for name, days in (("late.status.test", 80), ("soon.status.test", 3), ("mid.status.test", 40)):
        _certify(inventory, name, days, CA_A if days > 10 else CA_B)
    _fail(inventory, "broken.status.test", 4, SiteState.FAILING, EVIL)
    _fail(inventory, "flaky.status.test", 1, SiteState.PENDING, "connection refused")
    inventory.sites.add_site(("new.status.test",), ChallengeMethod.HTTP_01, NOW + DAY)
    gone = inventory.sites.add_site(("gone.status.test",), ChallengeMethod.HTTP_01, NOW)
    assert [s.id for s in inventory.sites.lease_due("w", NOW, MINUTE, 9)] == [gone.id]
    assert inventory.sites.update_leased(gone.id, "w", SiteChange(state=SiteState.REMOVED))
    for ok, seconds in ((True, 2.0), (True, 4.0), (True, 6.0), (False, 8.0)):
        metrics.issuance(CA_A, ok, seconds)
    metrics.issuance(CA_B, True, 1.5)


@pytest.fixture
async def status_url(tmp_path: Path) -> AsyncIterator[str]:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    metrics = FleetMetrics()
    populate(inventory, metrics)
    runner = web.AppRunner(api_app(inventory, metrics, lambda: NOW), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/status"
    await runner.cleanup()
    inventory.close()


async def dump_dom(url: str, profile: Path, *flags: str) -> str:
    """`chromium --headless --dump-dom URL` with a fresh profile; stopped by its process
    group (Chromium forks child processes) if it does not finish."""
    proc = await asyncio.create_subprocess_exec(
        "chromium", *CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}", "--dump-dom", url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


class Tables(HTMLParser):
    """Each table's rows (by the table's id) as lists of cell texts, and the title."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.title = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td":
            self._cell = []
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data


async def test_status_page_in_headless_chromium(status_url: str, tmp_path: Path) -> None:
    dom = await dump_dom(status_url, tmp_path / "chromium-profile")
    page = Tables()
    page.feed(dom)
    assert page.title == "acmekit fleet"  # the problem text did not run as a script
    counts = {row[0]: int(row[1]) for row in page.tables["counts"] if row}
    assert counts == {"pending": 2, "issuing": 0, "active": 3, "failing": 1, "removed": 1,
                      "total": 7}  # fmt: skip

    expiring = [(row[0], row[3], row[5]) for row in page.tables["expiring"] if row]
    assert expiring == [  # every name of each site
        ("soon.status.test www.soon.status.test", "3.0", CA_B),
        ("mid.status.test www.mid.status.test", "40.0", CA_A),
        ("late.status.test www.late.status.test", "80.0", CA_A),
    ]
    failures = {row[0]: row for row in page.tables["failures"] if row}
    assert list(failures) == ["broken.status.test", "flaky.status.test"]
    assert failures["broken.status.test"][1:4] == ["failing", "4", f"caa: {EVIL}"]
    assert failures["flaky.status.test"][1:4] == ["pending", "1", "caa: connection refused"]
    assert "<script>document.title" not in dom and "&lt;script&gt;" in dom

    cas = {row[0]: row[1:] for row in page.tables["cas"] if row}
    assert cas[CA_A] == ["3", "1", "75.0%", "5.00", "8.00"]
    assert cas[CA_B] == ["1", "0", "100.0%", "1.50", "1.50"]
    assert re.search(r"As of 2030-03-17 \d\d:\d\d:\d\d UTC", dom)
