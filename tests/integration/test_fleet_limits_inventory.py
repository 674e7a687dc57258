"""The inventory's side of the CA accounting, on SQLite and on PostgreSQL (127.0.0.1):
reservations that stop at the limit, settle or drop, stale ones that stop counting;
CA health; per-site options and backups."""

from __future__ import annotations

from acmekit.fleet import planner
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import BackupCert, ChallengeMethod
from acmekit.fleet.repos.sites import OptionsChange

T0 = 1_700_000_000_000_000
WEEK = 7 * planner.DAY
HOUR = planner.HOUR


def _room(limit: int, now: int):  # type: ignore[no-untyped-def]
    def room(usage: dict[str, list[int]]) -> bool:
        return all(planner.refill_time(t, limit, WEEK, now) <= now for t in usage.values())

    return room


def test_reservations_count_until_the_limit(inventory: Inventory) -> None:
    window = (T0 - WEEK, T0 - HOUR)
    for site in ("s1", "s2"):
        assert inventory.cas.reserve("ca", site, ["a.test"], T0, _room(2, T0), window)
    assert not inventory.cas.reserve("ca", "s3", ["a.test"], T0, _room(2, T0), window)
    assert inventory.cas.reserve("ca", "s3", ["b.test"], T0, _room(2, T0), window)
    assert inventory.cas.reserve("other", "s3", ["a.test"], T0, _room(2, T0), window)
    inventory.cas.settle("ca", "s1", T0 + 5, issued=True)
    inventory.cas.settle("ca", "s2", T0 + 5, issued=False)
    usage = inventory.cas.usage("ca", ["a.test", "b.test"], T0 - WEEK, T0 - HOUR)
    assert usage == {"a.test": [T0 + 5], "b.test": [T0]}
    assert inventory.cas.count_issued("ca", "a.test") == 1
    # A reservation left by a dead worker stops counting once stale.
    later = T0 + 2 * HOUR
    assert inventory.cas.usage("ca", ["b.test"], later - WEEK, later - HOUR) == {"b.test": []}
    # An issued certificate counts for the whole window, then no more.
    end = T0 + 5 + WEEK
    assert inventory.cas.usage("ca", ["a.test"], end - WEEK, end - HOUR) == {"a.test": []}


def test_ca_health_counts_failures_and_resets(inventory: Inventory) -> None:
    assert inventory.cas.health(["ca"])["ca"].failures == 0
    for _ in range(2):
        inventory.cas.failed("ca", "boom", lambda n: None if n < 3 else T0)
    assert inventory.cas.health(["ca"])["ca"].down_until is None
    assert inventory.cas.failed("ca", "boom", lambda n: None if n < 3 else T0) == 3
    health = inventory.cas.health(["ca"])["ca"]
    assert (health.failures, health.down_until, health.last_error) == (3, T0, "boom")
    inventory.cas.succeeded("ca")
    assert inventory.cas.health(["ca"])["ca"].failures == 0
    assert inventory.cas.account_key("ca", "KEY-1") == "KEY-1"
    assert inventory.cas.account_key("ca", "KEY-2") == "KEY-1"
    assert inventory.cas.account_url("ca") is None
    inventory.cas.set_account_url("ca", "https://ca.test/acct/1")
    assert inventory.cas.account_url("ca") == "https://ca.test/acct/1"


def test_options_and_backups_are_guarded_by_the_lease(inventory: Inventory) -> None:
    site = inventory.sites.add_site(("a.test",), ChallengeMethod.HTTP_01, T0)
    assert not inventory.sites.options(site.id).backup
    inventory.sites.set_options(site.id, OptionsChange(backup=True))
    assert inventory.sites.options(site.id).backup
    backup = BackupCert(site.id, "two", "ab", T0, T0 + WEEK, "CHAIN", "KEY", T0, T0 + 5)
    assert not inventory.sites.store_backup("w1", backup)
    assert not inventory.sites.update_options_leased(site.id, "w1", OptionsChange(next_check=T0))
    [leased] = inventory.sites.lease_due("w1", T0, HOUR, 1)
    assert inventory.sites.store_backup("w1", backup)
    assert inventory.sites.update_options_leased(site.id, "w1", OptionsChange(next_check=T0))
    assert inventory.sites.backup(site.id) == backup
    assert (
        inventory.sites.options(leased.id).next_check == T0
        and inventory.sites.options(site.id).backup
    )
