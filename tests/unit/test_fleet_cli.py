"""`acmekit fleet` inventory commands against an SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from acmekit.cli.fleet import fleet


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
