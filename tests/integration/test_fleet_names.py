"""A name belongs to one site at most, on SQLite and on PostgreSQL (127.0.0.1:5432): the
inventory refuses a taken name (whatever its case) with NameTaken, a bulk add skips and
reports the lines that clash, a removed site frees its names, and of two adds racing
for one name through two engines (two API processes) exactly one wins."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from acmekit import migrate
from acmekit.fleet.inventory import Inventory, NameTaken
from acmekit.fleet.model import Added, ChallengeMethod, NameConflict, Site
from acmekit.fleet.repos import names as name_index
from acmekit.fleet.schema import settings, site_names, sites

T0 = 1_700_000_000_000_000
HTTP = ChallengeMethod.HTTP_01


def _taken(inventory: Inventory, names: tuple[str, ...]) -> NameTaken:
    with pytest.raises(NameTaken) as caught:
        inventory.sites.add_site(names, HTTP, T0)
    return caught.value


def test_a_taken_name_is_refused_whatever_its_case_or_place(inventory: Inventory) -> None:
    shop = inventory.sites.add_site(("shop.example.test", "www.shop.example.test"), HTTP, T0)
    again = _taken(inventory, ("shop.example.test",))
    assert (again.name, again.site_id) == ("shop.example.test", shop.id)
    assert str(again) == f"shop.example.test already belongs to site {shop.id}"
    assert _taken(inventory, ("SHOP.example.test",)).name == "shop.example.test"
    second = _taken(inventory, ("other.example.test", "WWW.shop.example.test"))
    assert (second.name, second.site_id) == ("www.shop.example.test", shop.id)
    assert [s.id for s in inventory.sites.page()] == [shop.id]  # nothing half-added
    assert inventory.sites.add_site(("other.example.test",), HTTP, T0).names == (
        "other.example.test",
    )
    assert inventory.names.holder("WWW.SHOP.example.test") == shop.id
    assert inventory.sites.site_by_name("Shop.Example.Test") == shop
    assert inventory.sites.site_by_name("www.shop.example.test") is None  # not its first name


def test_a_wildcard_and_its_apex_are_different_names(inventory: Inventory) -> None:
    wild = inventory.sites.add_site(("*.w.example.test",), HTTP, T0)
    apex = inventory.sites.add_site(("w.example.test",), HTTP, T0)
    assert _taken(inventory, ("*.W.example.test",)).site_id == wild.id
    assert inventory.names.holder("w.example.test") == apex.id


def test_removing_a_site_frees_its_names(inventory: Inventory) -> None:
    old = inventory.sites.add_site(("shop.example.test", "www.shop.example.test"), HTTP, T0)
    assert inventory.sites.remove_site(old.id, T0 + 1)
    assert inventory.names.holder("www.shop.example.test") is None
    assert inventory.sites.site_by_name("shop.example.test") is None
    new = inventory.sites.add_site(("www.shop.example.test", "shop.example.test"), HTTP, T0 + 2)
    assert inventory.names.holder("shop.example.test") == new.id
    assert _taken(inventory, ("shop.example.test",)).site_id == new.id
    assert inventory.sites.remove_site(old.id, T0 + 3)  # removing it again frees nothing of new's
    assert inventory.names.holder("shop.example.test") == new.id


def test_a_bulk_add_skips_and_reports_the_lines_that_clash(inventory: Inventory) -> None:
    held = inventory.sites.add_site(("held.example.test", "www.held.example.test"), HTTP, T0)
    batch = [
        ("a.example.test", "A.example.test"),  # the same name twice in a line is one name
        ("b.example.test", "WWW.held.example.test"),
        ("c.example.test",),
        ("d.example.test", "c.example.test"),  # taken by the line before
        ("a.example.test",),
    ]
    added = inventory.sites.add_sites(batch, HTTP, T0)
    assert len(added.ids) == 2 and len(added) == 2 and list(added) == added.ids
    a, c = (inventory.sites.site(i) for i in added.ids)
    assert a is not None and c is not None
    assert (a.names, c.names) == (("a.example.test", "A.example.test"), ("c.example.test",))
    assert added.conflicts == [
        NameConflict(1, "www.held.example.test", held.id),
        NameConflict(3, "c.example.test", c.id),
        NameConflict(4, "a.example.test", a.id),
    ]
    assert (
        inventory.names.holder("b.example.test") is None
        and inventory.names.holder("d.example.test") is None
    )
    assert inventory.sites.add_sites([], HTTP, T0) == Added([])
    ids = inventory.sites.add_sites([(f"s{i}.example.test",) for i in range(1200)], HTTP, T0).ids
    assert len(set(ids)) == 1200 and inventory.names.holder("s1199.example.test") == ids[-1]
    again = inventory.sites.add_sites([(f"S{i}.example.test",) for i in range(1200)], HTTP, T0)
    assert again.ids == [] and [x.site_id for x in again.conflicts] == ids


def _racing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the first two lookups of holders wait for each other, so that two adds both
    find a name free before either inserts: the database must pick the winner."""
    real: Callable[[Connection, Collection[str]], dict[str, str]] = name_index.holders
    calls = itertools.count()
    barrier = threading.Barrier(2, timeout=20)

    def racing(c: Connection, keys: Collection[str]) -> dict[str, str]:
        found = real(c, keys)
        if next(calls) < 2:
            barrier.wait()
        return found

    monkeypatch.setattr(name_index, "holders", racing)


def test_of_two_processes_adding_one_name_at_once_one_wins(
    db_url: str, inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Inventory.from_url(db_url)  # a second process: an engine of its own
    _racing(monkeypatch)

    def add(inv: Inventory) -> Site | NameTaken:
        try:
            return inv.sites.add_site(("race.example.test",), HTTP, T0)
        except NameTaken as exc:
            return exc

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(add, [inventory, other]))
    other.close()
    won = [r for r in results if isinstance(r, Site)]
    lost = [r for r in results if isinstance(r, NameTaken)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].site_id == won[0].id == inventory.names.holder("race.example.test")
    assert [s.id for s in inventory.sites.page()] == [won[0].id]


def test_of_two_bulk_adds_racing_each_line_is_added_once(
    db_url: str, inventory: Inventory, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Inventory.from_url(db_url)
    _racing(monkeypatch)
    first = [(f"n{i}.example.test",) for i in range(0, 60)]
    second = [(f"n{i}.example.test",) for i in range(40, 100)]
    with ThreadPoolExecutor(2) as pool:
        one, two = pool.map(
            lambda job: job[0].sites.add_sites(job[1], HTTP, T0),
            [(inventory, first), (other, second)],
        )
    other.close()
    assert sorted([len(one), len(two)]) == [40, 60]  # the loser looked again: 20 clashed
    assert len(one.conflicts) + len(two.conflicts) == 20
    everyone = inventory.sites.page(limit=1000)
    assert len(everyone) == 100
    assert len({s.name for s in everyone}) == 100


def test_an_older_inventory_gets_its_names_once_the_oldest_site_keeping_a_shared_one(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    inv = Inventory.from_url(db_url)
    first = inv.sites.add_site(("shop.example.test", "www.shop.example.test"), HTTP, T0)
    gone = inv.sites.add_site(("gone.example.test",), HTTP, T0)
    inv.sites.remove_site(gone.id, T0)
    with inv.engine.begin() as c:  # two sites with one name, as before names were unique
        dupe = {**c.execute(sa.select(sites).where(sites.c.id == first.id)).one()._mapping}
        dupe.update(id="0" * 16, created=T0 + 1, names=json.dumps(["SHOP.example.test"]))
        c.execute(sites.insert().values(**dupe))
    migrate.downgrade(inv.engine, migrate.FLEET, "0001")
    with inv.engine.begin() as c:  # an inventory from before names were indexed
        c.execute(site_names.delete())
        c.execute(settings.delete())
    inv.close()
    with caplog.at_level(logging.WARNING, logger="acmekit.fleet.migrations"):
        inv = Inventory.from_url(db_url)  # the upgrade fills the names
    assert inv.names.holder("shop.example.test") == first.id
    assert inv.names.holder("www.shop.example.test") == first.id
    assert inv.names.holder("gone.example.test") is None
    assert f"sites {first.id} and {'0' * 16} share shop.example.test" in caplog.text
    with inv.engine.begin() as c:
        c.execute(site_names.delete().where(site_names.c.site_id == first.id))
    inv.close()
    inv = Inventory.from_url(db_url)  # filled once only: what was deleted stays deleted
    assert inv.names.holder("shop.example.test") is None
    inv.close()
