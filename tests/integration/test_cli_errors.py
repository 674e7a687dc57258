"""Bad input on the command line ends in one line naming the problem and a non-zero exit,
never a traceback, whichever program it reaches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    (["check", "127.0.0.1:abc"], "'abc' is not a port"),
    (["server", "--dns-resolver", "garbage"], "the port is missing"),
    (["server", "--db", "mysql://x"], "sqlite:///FILE"),
    (["server", "--http01-port", "99999"], "99999"),
    (["server", "--allow-validation-network", "10.0.0.1/8"], "'10.0.0.1/8' is not a network"),
    (["dns", "--default-ipv4", "notanip", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"],
     "notanip"),
    (["fleet", "list", "--db", "bogus"], "bogus"),
    (["certonly", "--server", "https://127.0.0.1:9/directory", "--standalone", "-d", "a.test",
      "--http-01-port", "70000"], "70000"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(c[0][:2]) for c in CASES])
def test_bad_input_is_one_line(argv: list[str], words: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "acmekit", *argv],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert words in result.stderr
    errors = [line for line in result.stderr.splitlines() if "rror" in line or "acmekit:" in line]
    assert len(errors) == 1, result.stderr
