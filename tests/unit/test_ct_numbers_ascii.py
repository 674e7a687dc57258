"""The CT log's numbers from a log list, the command line and the TOML file are ASCII
decimal and finite: int() and float() also take any script's digits ("\\u0663" is 3),
"1_000" and surrounding spaces, float() "1e3", "nan" and "inf"; each is refused in one
line that names the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.cli.ct import ct as ct_command
from acmekit.protocol import ct


def _log_list(mmd: Any) -> str:
    info = ct.LogInfo("numbers log", ec.generate_private_key(ec.SECP256R1()).public_key(), "u")
    doc = ct.LogList((info,)).to_json()
    doc["operators"][0]["logs"][0]["mmd"] = mmd
    return json.dumps(doc)


BAD_JSON = ["\u0663", "1_000", " 60", "60", 60.5, True, -1]


@pytest.mark.parametrize("mmd", BAD_JSON, ids=[f"bad{i}" for i in range(len(BAD_JSON))])
def test_a_log_lists_mmd_is_a_json_integer(mmd: Any) -> None:
    with pytest.raises(ct.CtError, match=r"'numbers log': mmd .* is not a uint64 JSON number"):
        ct.LogList.loads(_log_list(mmd))


def test_a_log_lists_integer_mmd_is_read() -> None:
    assert ct.LogList.loads(_log_list(86400)).logs[0].mmd == 86400


def _ct(tmp_path: Path, *argv: str) -> list[str]:
    """`acmekit ct ARGV` with no roots to accept (so it never gets to listen): its error
    lines."""
    args = ["--state-dir", str(tmp_path / "log"), "--listen", "127.0.0.1:0", *argv]
    result = CliRunner().invoke(ct_command, args)
    assert result.exit_code != 0
    return [line for line in result.output.splitlines() if "rror" in line]


BAD_FLAGS = [
    "\u0663", "\u0661.5", "1_000", " 60", "60 ", "1e3", "nan", "inf", "", ".5", "5.", "9" * 400
]  # fmt: skip


@pytest.mark.parametrize("text", BAD_FLAGS, ids=[f"bad{i}" for i in range(len(BAD_FLAGS))])
def test_the_mmd_flag_takes_ascii_decimal_seconds(tmp_path: Path, text: str) -> None:
    assert _ct(tmp_path, "--mmd", text) == [
        f"Error: Invalid value for '--mmd': {text[:40]!r} is not a number of seconds "
        "(ASCII digits: 60, 0.5)"
    ]


def test_the_mmd_flag_has_a_minimum(tmp_path: Path) -> None:
    assert _ct(tmp_path, "--mmd", "0.05") == [
        "Error: Invalid value for '--mmd': 0.05 is less than 0.1 seconds"
    ]


@pytest.mark.parametrize("text", ["60", "0.5", "0.1"])
def test_the_mmd_flag_reads_decimal_seconds(tmp_path: Path, text: str) -> None:
    (error,) = _ct(tmp_path, "--mmd", text)
    assert "no accepted roots" in error  # past the flags: the log starts


@pytest.mark.parametrize("value", ["nan", "inf", "0.0"])
def test_the_files_mmd_is_a_finite_number_of_seconds(tmp_path: Path, value: str) -> None:
    (tmp_path / "ct.toml").write_text(f"mmd = {value}\n")
    (error,) = _ct(tmp_path, "--config", str(tmp_path / "ct.toml"))
    assert "must be a number of seconds (at least 0.1)" in error


@pytest.mark.parametrize("value", ["1e9", "1e20", "1.7976931348623157e308"])
def test_the_files_mmd_has_the_flags_nine_digits(tmp_path: Path, value: str) -> None:
    """1.8e308 started a log whose sequencer overflowed on every pass (SCTs, no tree),
    and 1e20 wrote a log list `mmd` past uint64."""
    (tmp_path / "ct.toml").write_text(f"mmd = {value}\n")
    (error,) = _ct(tmp_path, "--config", str(tmp_path / "ct.toml"))
    assert error.endswith("must be a number of seconds (at most 9 digits)")
