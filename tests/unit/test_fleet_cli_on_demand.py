"""`fleet serve`'s on-demand options are checked before anything starts: patterns and an
ask URL need the certificate endpoint, and a pattern must be a name or `*.NAME`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from acmekit.cli.fleet import fleet


def _serve(tmp_path: Path, *args: str) -> tuple[int, str]:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    argv = ["serve", "--db", db, "--server", "https://ca.test/dir", *args]
    result = CliRunner().invoke(fleet, argv)
    return result.exit_code, result.output


def test_on_demand_needs_the_certificate_endpoint(tmp_path: Path) -> None:
    code, out = _serve(tmp_path, "--on-demand", "*.shop.test")
    assert code == 2 and "--on-demand and --on-demand-ask need --cert-listen" in out
    code, out = _serve(tmp_path, "--on-demand-ask", "http://127.0.0.1:9/ask")
    assert code == 2 and "need --cert-listen" in out


def test_a_pattern_must_be_a_name(tmp_path: Path) -> None:
    code, out = _serve(tmp_path, "--cert-listen", "127.0.0.1:0", "--on-demand", "not a name")
    assert code == 2 and "is not a DNS name" in out
    code, out = _serve(tmp_path, "--cert-listen", "127.0.0.1:0", "--cert-allow", "10.0.0/8")
    assert code == 2 and "10.0.0/8" in out
