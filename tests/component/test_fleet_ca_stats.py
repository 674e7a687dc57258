"""Each CA's orders by the whole fleet, on the status page and in `/metrics`.

One inventory client writes what its worker did (hourly buckets per CA, as a worker
does at the end of a pass); another, with its own engine as a separate `fleet serve`
process has, collects the status page and serves `/metrics` from the same SQLite file
or PostgreSQL database (127.0.0.1). The last 24 hours count; older buckets do not, and
buckets a week old are deleted when new ones are written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from acmekit.fleet.api import api_app
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.metrics import FleetMetrics, add_attempt, attempt_bucket, bucket_hour
from acmekit.fleet.model import CaStatsBucket
from acmekit.fleet.planner import DAY, HOUR, MINUTE
from acmekit.fleet.status import collect, render

NOW = bucket_hour(1_900_000_000_000_000) + 17 * MINUTE  # 17 minutes into an hour
CA_A = "https://ca-a.fleet.test/directory"
CA_B = "ca-b"


@pytest.fixture
def clients(db_url: str) -> Iterator[tuple[Inventory, Inventory]]:
    worker_side, page_side = Inventory.from_url(db_url), Inventory.from_url(db_url)
    yield worker_side, page_side
    worker_side.close()
    page_side.close()


def _write(inventory: Inventory, attempts: list[tuple[str, int, bool, float]]) -> None:
    """What a worker does: fold its attempts into buckets, then write them at once."""
    pending: dict[tuple[str, int], CaStatsBucket] = {}
    for ca, at, issued, seconds in attempts:
        add_attempt(pending, attempt_bucket(ca, at, issued, seconds))
    inventory.cas.add_stats(pending.values())


def _fleet_history(inventory: Inventory) -> None:
    """Two passes of one worker and one of another, and attempts from long ago."""
    _write(inventory, [(CA_A, NOW - MINUTE, True, 2.0), (CA_A, NOW - 2 * HOUR, True, 4.0)])
    _write(inventory, [(CA_A, NOW - 23 * HOUR, True, 6.0), (CA_A, NOW, False, 30.0)])
    _write(inventory, [(CA_B, NOW - 5 * HOUR, True, 1.5)])
    # Outside the window: the bucket of the hour 24 hours ago, and older.
    _write(inventory, [(CA_A, NOW - 24 * HOUR, False, 9.0), (CA_B, NOW - 3 * DAY, False, 9.0)])


def test_a_page_collected_by_another_client_shows_the_fleets_figures(
    clients: tuple[Inventory, Inventory],
) -> None:
    worker_side, page_side = clients
    _fleet_history(worker_side)
    report = collect(page_side, FleetMetrics(), NOW, [CA_A, CA_B])
    recent = {c.ca: c for c in report.recent}
    assert list(recent) == [CA_A, CA_B]
    a, b = recent[CA_A], recent[CA_B]
    assert (a.issued, a.failed, a.max_seconds) == (3, 1, 6.0)
    assert a.success_rate == 0.75 and a.mean_seconds == 4.0
    assert (b.issued, b.failed, b.success_rate, b.mean_seconds) == (1, 0, 1.0, 1.5)

    page = render(report)
    assert "Certificate authorities, whole fleet (last 24 hours)" in page
    row_a = (
        f'<tr><td>{CA_A}</td><td class="n">3</td><td class="n">1</td>'
        '<td class="n">75.0%</td><td class="n">4.00</td><td class="n">6.00</td></tr>'
    )
    assert '<table id="ca-recent">' in page and row_a in page
    assert '<td>ca-b</td><td class="n">1</td><td class="n">0</td><td class="n">100.0%</td>' in (
        page
    )
    # This process ordered nothing itself: its own table says so.
    assert "No orders since this process started." in page


def test_the_window_moves_on_and_old_buckets_are_deleted(
    clients: tuple[Inventory, Inventory],
) -> None:
    worker_side, page_side = clients
    _fleet_history(worker_side)
    hours = {(b.ca, b.hour) for b in page_side.cas.stats(0)}
    assert (CA_B, bucket_hour(NOW - 3 * DAY)) in hours

    # 20 hours on, the window starts 3 hours before NOW's hour.
    [a] = collect(page_side, FleetMetrics(), NOW + 20 * HOUR).recent
    assert (a.ca, a.issued, a.failed) == (CA_A, 2, 1)
    # A day on, it starts after NOW's hour: nothing counts.
    assert collect(page_side, FleetMetrics(), NOW + DAY).recent == []
    assert "No orders in the last 24 hours." in render(
        collect(page_side, FleetMetrics(), NOW + 2 * DAY)
    )

    # Writing a new bucket deletes every bucket a week older than it.
    _write(worker_side, [(CA_B, NOW + 4 * DAY + HOUR, True, 1.0)])
    left = [(b.ca, b.hour) for b in page_side.cas.stats(0) if b.ca == CA_B]
    assert left == [(CA_B, bucket_hour(NOW - 5 * HOUR)), (CA_B, bucket_hour(NOW + 4 * DAY + HOUR))]
    assert len([b for b in page_side.cas.stats(0) if b.ca == CA_A]) == 4  # all newer


@pytest.fixture
async def api(clients: tuple[Inventory, Inventory]) -> AsyncIterator[str]:
    runner = web.AppRunner(api_app(clients[1], FleetMetrics(), lambda: NOW), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_status_and_metrics_served_from_another_client(
    clients: tuple[Inventory, Inventory], api: str
) -> None:
    _fleet_history(clients[0])
    async with aiohttp.ClientSession() as http:
        page = await (await http.get(f"{api}/status")).text()
        metrics = await (await http.get(f"{api}/metrics")).text()
    assert '<td class="n">75.0%</td><td class="n">4.00</td><td class="n">6.00</td>' in page
    assert "acmekit_fleet_ca_recent_window_seconds 86400" in metrics
    for line in (
        f'acmekit_fleet_ca_recent_orders{{ca="{CA_A}",outcome="success"}} 3',
        f'acmekit_fleet_ca_recent_orders{{ca="{CA_A}",outcome="failure"}} 1',
        f'acmekit_fleet_ca_recent_success_ratio{{ca="{CA_A}"}} 0.75',
        f'acmekit_fleet_ca_recent_issue_seconds_mean{{ca="{CA_A}"}} 4',
        f'acmekit_fleet_ca_recent_issue_seconds_max{{ca="{CA_A}"}} 6',
        f'acmekit_fleet_ca_recent_orders{{ca="{CA_B}",outcome="success"}} 1',
    ):
        assert line in metrics.splitlines(), line
    # This process's own counters are there too, and empty.
    assert "# TYPE acmekit_fleet_issuances_total counter" in metrics
    assert "acmekit_fleet_issuances_total{" not in metrics
