"""A fleet site's names (the API's and the CLI's) are checked before they are folded:
the Kelvin sign (U+212A) lower-cases to ASCII "k", so "\u212aexample.test" was stored as
"kexample.test"; and a label checked with `re.match` and `$` passed with a final newline."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from acmekit.cli.fleet import fleet
from acmekit.fleet.model import normalize_names


@pytest.mark.parametrize(
    "raw",
    ["\u212aexample.test", "*.\u212aexample.test", "a\n.example.test", "a.example.test\n.x"],
    ids=["kelvin", "kelvin-wildcard", "newline-label", "newline-inner"],
)
def test_a_name_folding_into_another_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a DNS name"):
        normalize_names([raw])


def test_ascii_names_are_folded_as_before() -> None:
    assert normalize_names([" WWW.Example.TEST. ", "*.example.test", "www.example.test"]) == (
        "www.example.test",
        "*.example.test",
    )


def test_an_on_demand_pattern_is_checked_before_it_is_folded(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    argv = ["serve", "--db", db, "--server", "https://ca.test/dir", "--cert-listen"]
    argv += ["127.0.0.1:0", "--on-demand", "*.\u212aexample.test"]
    got = CliRunner().invoke(fleet, argv)
    assert got.exit_code == 2, got.output
    assert "is not a DNS name" in got.output
