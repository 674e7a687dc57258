"""`fleet serve` without `--dns-api` records that it cannot validate dns-01; the API
and `fleet add` (another process, same inventory) then refuse wildcard, dns-01 and
dns-account-01 sites with what to configure (not dns-persist-01 wildcards), and
`--from-file` skips and names their lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from acmekit_testkit.fleet_serve import fleet_serve_process
from acmekit_testkit.ports import free_port


def _fleet(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "acmekit", "fleet", *args, "--db", f"sqlite:///{db}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_a_fleet_without_a_dns_api_refuses_wildcards_at_the_api_and_the_cli(
    tmp_path: Path,
) -> None:
    ca = ["--server", "https://127.0.0.1:9/directory"]  # never reached: nothing is due
    with fleet_serve_process(tmp_path, http01_port=free_port(), edges=[], args=ca) as fleet:
        status, problem = fleet.request("POST", "/domains", {"names": ["*.wild.fleet.test"]})
        assert status == 422, problem
        assert "wildcard *.wild.fleet.test needs dns-01" in problem["detail"]
        assert "--dns-api URL" in problem["detail"]

        added = _fleet(fleet.db, "add", "*.cli.fleet.test", "cli.fleet.test")
        assert added.returncode == 1
        (line,) = added.stderr.splitlines()
        assert line.startswith("acmekit: site not added: wildcard *.cli.fleet.test needs dns-01")
        assert "--dns-api URL --dns-resolver HOST:PORT" in line

        dns = _fleet(fleet.db, "add", "--method", "dns-01", "dns.fleet.test")
        assert dns.returncode == 1 and "dns-01 was asked for" in dns.stderr

        # dns-account-01 publishes through the DNS API too; a dns-persist-01 wildcard
        # needs none (its owner publishes the standing record).
        body = {"names": ["acct.fleet.test"], "method": "dns-account-01"}
        status, problem = fleet.request("POST", "/domains", body)
        assert status == 422 and "dns-account-01 was asked for" in problem["detail"], problem
        body = {"names": ["*.persist.fleet.test"], "method": "dns-persist-01"}
        status, site = fleet.request("POST", "/domains", body)
        assert status == 201 and site["method"] == "dns-persist-01", site

        (tmp_path / "sites.txt").write_text("a.fleet.test\n*.b.fleet.test b.fleet.test\n")
        bulk = _fleet(fleet.db, "add", "--from-file", str(tmp_path / "sites.txt"))
        assert bulk.returncode == 0, bulk.stderr
        assert "added 1 sites, skipped 1" in bulk.stdout
        assert "line 2: wildcard *.b.fleet.test needs dns-01; skipped" in bulk.stderr
        assert "--dns-api" in bulk.stderr
        listed = _fleet(fleet.db, "list").stdout
        assert "a.fleet.test" in listed and "b.fleet.test" not in listed
