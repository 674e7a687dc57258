"""`acmekit fleet` inventory commands against an SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from acmekit.cli.fleet import fleet, parse_ca
from acmekit.fleet.inventory import Inventory


def test_add_list_status_renew_remove(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    runner = CliRunner()
    added = runner.invoke(fleet, ["add", "--db", db, "A.fleet.test", "www.a.fleet.test"])
    assert added.exit_code == 0, added.output
    site_id = added.output.strip()
    listing = runner.invoke(fleet, ["list", "--db", db])
    assert listing.output == f"{site_id} pending a.fleet.test www.a.fleet.test\n"
    status = runner.invoke(fleet, ["status", "--db", db, "a.fleet.test"])
    assert json.loads(status.output)["id"] == site_id
    assert runner.invoke(fleet, ["renew", "--db", db, site_id]).exit_code == 0
    removed = runner.invoke(fleet, ["remove", "--db", db, "a.fleet.test"])
    assert removed.exit_code == 0 and "removing" in removed.output
    again = runner.invoke(fleet, ["renew", "--db", db, site_id])
    assert again.exit_code == 1 and "removed" in again.output
    missing = runner.invoke(fleet, ["remove", "--db", db, "nope.test"])
    assert missing.exit_code == 1 and "no site" in missing.output
    bad = runner.invoke(fleet, ["add", "--db", db, "bad name"])
    assert bad.exit_code == 2


def test_bulk_add_from_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    lines = ["# sites", *(f"s{i}.fleet.test www.s{i}.fleet.test" for i in range(2_500)), ""]
    (tmp_path / "sites.txt").write_text("\n".join(lines))
    runner = CliRunner()
    result = runner.invoke(fleet, ["add", "--db", db, "--from-file", str(tmp_path / "sites.txt")])
    assert result.exit_code == 0, result.output
    assert "added 2500 sites" in result.output
    status = runner.invoke(fleet, ["status", "--db", db])
    assert "pending: 2500" in status.output.splitlines()


def test_ca_entries_parse_in_order_with_their_options() -> None:
    spec = parse_ca(
        "le=https://acme.example/directory,eab-kid=K,eab-hmac=SE1BQw,concurrency=3,limit=none",
        "default-root.pem",
    )
    assert (spec.name, spec.directory, spec.eab_kid, spec.eab_hmac_key) == (
        "le", "https://acme.example/directory", "K", "SE1BQw",
    )  # fmt: skip
    assert spec.concurrency == 3 and spec.certificates_per_domain is None
    assert spec.ca_bundle == "default-root.pem"
    own = parse_ca("b=https://b.example/dir,limit=20,ca-bundle=b.pem")
    assert own.certificates_per_domain == 20 and own.ca_bundle == "b.pem" and own.eab() is None
    for bad in (
        "no-url",
        "x=ftp://x",
        "x=https://x/d,colour=blue",
        "x=https://x/d,eab-kid=K",
        "x=https://x/d,limit=0",
        "x=https://x/d,concurrency=many",
    ):
        with pytest.raises(click.BadParameter):
            parse_ca(bad)


def test_serve_wants_one_way_of_naming_cas(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    runner = CliRunner()
    neither = runner.invoke(fleet, ["worker", "--db", db])
    assert neither.exit_code == 2 and "--ca NAME=URL" in neither.output
    both = ["worker", "--db", db, "--server", "https://a/d", "--ca", "b=https://b/d"]
    assert "not both" in runner.invoke(fleet, both).output
    same = ["worker", "--db", db, "--ca", "a=https://a/d", "--ca", "a=https://b/d"]
    assert "must differ" in runner.invoke(fleet, same).output
    zero = runner.invoke(fleet, ["worker", "--db", db, "--server", "https://a/d", "--batch", "0"])
    assert zero.exit_code == 2 and "--batch" in zero.output


def test_add_with_backup_and_a_delegated_wildcard(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    runner = CliRunner()
    argv = ["add", "--db", db, "--backup", "--method", "dns-01", "--delegation-zone", "d.test"]
    added = runner.invoke(fleet, [*argv, "*.shop.test", "shop.test", "www.shop.test"])
    assert added.exit_code == 0, added.output
    site_id, *records = added.output.splitlines()
    assert records == [
        "_acme-challenge.shop.test. CNAME shop-test.d.test.",
        "_acme-challenge.www.shop.test. CNAME www-shop-test.d.test.",
    ]
    status = runner.invoke(fleet, ["status", "--db", db, "--delegation-zone", "d.test", site_id])
    shown = json.loads(status.output)
    assert shown["options"]["backup"] is True and shown["backup"] is None
    assert shown["delegation"]["_acme-challenge.shop.test."] == "shop-test.d.test."
    plain = runner.invoke(fleet, ["add", "--db", db, "plain.test"])
    assert len(plain.output.splitlines()) == 1  # http-01: the id only
    inventory = Inventory.from_url(db)
    try:
        assert inventory.sites.options(site_id).backup
        assert not inventory.sites.options(plain.output.strip()).backup
    finally:
        inventory.close()


def test_bulk_add_with_backup(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    (tmp_path / "sites.txt").write_text("a.bulk.test\nb.bulk.test www.b.bulk.test\n")
    runner = CliRunner()
    argv = ["add", "--db", db, "--backup", "--from-file", str(tmp_path / "sites.txt")]
    assert "added 2 sites" in runner.invoke(fleet, argv).output
    inventory = Inventory.from_url(db)
    try:
        sites = inventory.sites.page()
        assert len(sites) == 2 and all(inventory.sites.options(s.id).backup for s in sites)
    finally:
        inventory.close()


def test_add_refuses_a_taken_name_and_bulk_add_skips_its_lines(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    runner = CliRunner()
    first = runner.invoke(fleet, ["add", "--db", db, "shop.fleet.test", "www.shop.fleet.test"])
    assert first.exit_code == 0, first.output
    assert runner.invoke(fleet, ["add", "--db", db, "SHOP.fleet.test"]).exit_code != 0
    lines = ["a.fleet.test", "www.shop.fleet.test b.fleet.test", "A.fleet.test", "c.fleet.test"]
    (tmp_path / "sites.txt").write_text("\n".join(lines))
    result = runner.invoke(fleet, ["add", "--db", db, "--from-file", str(tmp_path / "sites.txt")])
    assert result.exit_code == 0, result.output
    inventory = Inventory.from_url(db)
    names = sorted(s.name for s in inventory.sites.page())
    inventory.close()
    assert names == ["a.fleet.test", "c.fleet.test", "shop.fleet.test"]


def test_bulk_add_skips_and_names_taken_lines(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'names.db'}"
    first = tmp_path / "first.txt"
    first.write_text("a.names.test www.a.names.test\nb.names.test\n")
    runner = CliRunner()
    assert (
        "added 2 sites, skipped 0"
        in runner.invoke(fleet, ["add", "--db", db, "--from-file", str(first)]).output
    )
    again = tmp_path / "again.txt"
    again.write_text("# comment\nWWW.a.names.test\nc.names.test\n")
    result = runner.invoke(fleet, ["add", "--db", db, "--from-file", str(again)])
    assert result.exit_code == 0
    assert "added 1 sites, skipped 1" in result.output
    assert "line 2: www.a.names.test already belongs to site" in result.output
    taken = runner.invoke(fleet, ["add", "--db", db, "b.names.test"])
    assert taken.exit_code == 1 and "b.names.test already belongs to site" in taken.output
