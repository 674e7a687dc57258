"""Settings that would refuse every client stop `acmekit server` at start, in one line
naming the setting, as a lifetime of 0 does. Each was taken: max_identifiers = 0 refused
every order and, as the cap on an account's validations at once, every challenge
(rateLimited); a negative [limits] bound is not off (0 is) but always passed, so
header_timeout = -1 closed every connection before its request and max_body_bytes = -1
answered every request 413; validation_timeout = 0 failed every validation. A top-level
lifetime of 0 beside a [profiles.classic] table that does not set it was reported
under the table's name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from acmekit_testkit.ports import free_port


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("max_identifiers = 0\n", "max_identifiers = 0"),
        ("validation_timeout = 0\n", "validation_timeout must be more than 0"),
        ("[limits]\nheader_timeout = -1\n", "limits.header_timeout must be 0 or more"),
        ("[limits]\nmax_body_bytes = -1\n", "limits.max_body_bytes must be 0 or more"),
        # the top-level setting, not the [profiles.classic] table that did not set it
        (
            'certificate_lifetime = 0\n[profiles.classic]\ndescription = "ours"\n',
            "acmekit: certificate_lifetime must be more than 0",
        ),
    ],
)
def test_settings_that_would_refuse_every_client_stop_the_start(
    toml: str, named: str, tmp_path: Path
) -> None:
    (tmp_path / "ca.toml").write_text(toml)
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", "server", "--config", "ca.toml", "--state-dir", "st",
         "--listen", f"127.0.0.1:{free_port()}", "--crl-listen", ""],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("acmekit: ") and named in lines[0], lines[0]
    assert not (tmp_path / "st").exists()  # refused before anything was made
