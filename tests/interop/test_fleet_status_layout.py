"""The fleet's status page on a laptop screen, laid out by Debian's Chromium (headless,
1366 x 768): every name of a site is shown, not only the first, and no table (the CA
tables with long directory URLs and long errors above all) is wider than the window.

The page is the one the API serves (`render(collect(...))`), with a script added at its
end that writes what Chromium measured into the DOM that `--dump-dom` returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics, add_attempt, attempt_bucket
from acmekit.fleet.model import CaStatsBucket, ChallengeMethod, SiteState
from acmekit.fleet.planner import MINUTE
from acmekit.fleet.repos.sites import SiteChange
from acmekit.fleet.status import collect, render

from .test_fleet_status_page import NOW, Tables, _certify, dump_dom, populate

pytestmark = pytest.mark.interop

WIDTH, HEIGHT = 1366, 768
# CAs as operators name them: their directory URLs, some long.
LONG_CAS = [
    "https://acme-v02.api.letsencrypt.org/directory",
    "https://acme.zerossl.com/v2/DV90/directory/with/a/very/long/path/that/goes/on/and/on/"
    "and/on/for/a/while/longer",
    "https://dv.acme-v02.api.pki.goog/directory",
]
MANY = [f"n{i}.many-names.status.test" for i in range(12)]
MEASURE = """<script>
const found = {innerWidth: window.innerWidth,
               scrollWidth: document.documentElement.scrollWidth, tables: {}};
for (const t of document.querySelectorAll("table")) {
  found.tables[t.id] = Math.ceil(t.getBoundingClientRect().right);
}
const out = document.createElement("pre");
out.id = "measured";
out.textContent = JSON.stringify(found);
document.body.appendChild(out);
</script>"""


def _long_history(inventory: Inventory) -> None:
    pending: dict[tuple[str, int], CaStatsBucket] = {}
    for i, ca in enumerate(LONG_CAS):
        add_attempt(pending, attempt_bucket(ca, NOW - (i + 1) * 60_000_000, True, 12.345))
        add_attempt(pending, attempt_bucket(ca, NOW - (i + 1) * 60_000_000, False, 123.456))
    inventory.cas.add_stats(pending.values())
    # Errors quote URLs and tokens that have no place to break.
    error = (
        "urn:ietf:params:acme:error:serverInternal: POST "
        "https://acme.zerossl.com/v2/DV90/order/" + "Zk3xQ9" * 30 + ": " + "went wrong " * 12
    )
    for ca in LONG_CAS:
        inventory.cas.failed(ca, error, lambda now: now + 3_600_000_000)


@pytest.fixture
async def page_url(tmp_path: Path) -> AsyncIterator[str]:
    inventory = Inventory.from_url(f"sqlite:///{tmp_path / 'fleet.db'}")
    metrics = FleetMetrics()
    populate(inventory, metrics)
    _certify_many(inventory)
    _long_history(inventory)
    for ca in LONG_CAS:
        metrics.issuance(ca, True, 3.0)

    async def page(request: web.Request) -> web.Response:
        html = render(collect(inventory, metrics, NOW, LONG_CAS))
        return web.Response(text=html.replace("</body>", MEASURE + "</body>"),
                            content_type="text/html")  # fmt: skip

    app = web.Application()
    app.router.add_get("/status", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/status"
    await runner.cleanup()
    inventory.close()


def _certify_many(inventory: Inventory) -> None:
    _certify(inventory, "many-names.status.test", 1, LONG_CAS[0])
    site = inventory.sites.add_site(tuple(MANY), ChallengeMethod.HTTP_01, NOW)
    assert [s.id for s in inventory.sites.lease_due("w", NOW, MINUTE, 9)] == [site.id]
    detail = "too many orders: see https://letsencrypt.org/docs/rate-limits/" + "#x" * 90
    problem = {"type": "urn:ietf:params:acme:error:rateLimited", "detail": detail}
    change = SiteChange(failure_count=2, last_problem=problem, state=SiteState.FAILING)
    assert inventory.sites.update_leased(site.id, "w", change)
    assert inventory.sites.release(site.id, "w", NOW + MINUTE, NOW)


async def test_every_name_shown_and_the_tables_fit_1366_pixels(
    page_url: str, tmp_path: Path
) -> None:
    dom = await dump_dom(page_url, tmp_path / "profile", f"--window-size={WIDTH},{HEIGHT}")
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, dom[-2000:]
    measured = json.loads(found[1].replace("&quot;", '"'))
    assert measured["innerWidth"] == WIDTH
    assert set(measured["tables"]) >= {"expiring", "ca-recent", "ca-health", "cas"}
    too_wide = {t: right for t, right in measured["tables"].items() if right > WIDTH}
    assert too_wide == {}, measured
    assert measured["scrollWidth"] <= WIDTH, measured

    page = Tables()
    page.feed(dom)
    expiring = {row[0].split()[0]: row[0].split() for row in page.tables["expiring"] if row}
    assert expiring["many-names.status.test"] == [
        "many-names.status.test",
        "www.many-names.status.test",
    ]
    assert expiring["soon.status.test"] == ["soon.status.test", "www.soon.status.test"]
    failing = {row[0].split()[0]: row[0].split() for row in page.tables["failures"] if row}
    assert failing[MANY[0]] == MANY
    health = {row[0]: row for row in page.tables["ca-health"] if row}
    assert list(health) == LONG_CAS
