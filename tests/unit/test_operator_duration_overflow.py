"""`acmekit server certs list --expiring-within` with a duration past what a date can
hold is refused as a bad option (exit 2, one line), not a traceback: `9999999w` ran
past the year 9999 when added to now, and `999999999w` past what a timedelta holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from acmekit.cli.main import cli
from acmekit.settings import parse_duration


@pytest.mark.parametrize("text", ["9999999w", "999999999w", "999999999d999999999w"])
def test_a_duration_too_long_is_a_bad_option(tmp_path: Path, text: str) -> None:
    argv = ["server", "certs", "list", "--expiring-within", text, "--state-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, argv)
    assert not isinstance(result.exception, OverflowError), result.exception
    assert result.exit_code == 2, result.output
    assert "--expiring-within" in result.stderr and "too long" in result.stderr


def test_parse_duration_refuses_what_a_timedelta_cannot_hold() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("999999999w")
