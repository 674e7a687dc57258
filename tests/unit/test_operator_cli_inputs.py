"""What the operator's commands read: durations (`certs list --expiring-within 7d`),
serial numbers (`certs show 0A:1B:...`), revocation reasons, and a state directory that
holds no CA database (refused, never made)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from acmekit.server.admin import AdminError, stored_serial
from acmekit.settings import parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-7d", "7d garbage", "1.5d", "7 days"])
def test_other_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_serials_as_operators_type_them() -> None:
    assert stored_serial("0A:1B:ff") == "a1bff"
    assert stored_serial("00") == "0"
    for bad in ("", "xyz", "12-34"):
        with pytest.raises(AdminError, match="not a serial number"):
            stored_serial(bad)


def test_the_operator_reasons_are_the_ones_the_acme_path_accepts() -> None:
    from acmekit.cli.server import certs_revoke
    from acmekit.server.admin import OPERATOR_REASONS, REASON_CODES
    from acmekit.server.authority import SUBSCRIBER_REASONS

    reason = next(p for p in certs_revoke.params if p.name == "reason")
    assert list(reason.type.choices) == list(OPERATOR_REASONS)  # type: ignore[attr-defined]
    assert {REASON_CODES[r] for r in OPERATOR_REASONS} == SUBSCRIBER_REASONS


def test_the_commands_refuse_a_missing_database(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from acmekit.cli.main import cli

    typo = str(tmp_path / "typo")
    for argv in (
        ["certs", "list"],
        ["certs", "show", "1"],
        ["certs", "revoke", "1", "--reason", "superseded"],
        ["accounts", "list"],
        ["accounts", "show", "a"],
        ["accounts", "deactivate", "a"],
        ["orders", "list", "--account", "a"],
    ):
        result = CliRunner().invoke(cli, ["server", *argv, "--state-dir", typo])
        assert result.exit_code == 1, argv
        assert "no CA database" in result.stderr
    assert not (tmp_path / "typo").exists()
