"""A SoftHSM2 token of the test's own, for the CA's key in a PKCS#11 token.

SoftHSM2 (Debian's `softhsm2`) keeps each token in a directory under its `tokendir`,
named by its configuration file, which `SOFTHSM2_CONF` points to. The token is made with
`softhsm2-util --init-token`. `removed()` takes the token away as a pulled device would:
its directory is moved out of `tokendir`, so the module's open session and object handles
stop working (SoftHSM2 checks its files on each use) and a new look finds no token; put
back, a fresh C_Initialize finds it again, with its keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SO_PIN = "87654321"


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    tokendir: Path
    label: str
    pin: str
    pin_file: Path
    module: str = MODULE

    @property
    def env(self) -> dict[str, str]:
        """The environment a process needs to see this token (and no other)."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def remove(self) -> Path:
        """Take the token away; returns where it went (for `put_back`)."""
        away = self.tokendir.parent / "token-away"
        away.mkdir()
        for entry in self.tokendir.iterdir():
            shutil.move(str(entry), str(away / entry.name))
        return away

    def put_back(self, away: Path) -> None:
        for entry in away.iterdir():
            shutil.move(str(entry), str(self.tokendir / entry.name))
        away.rmdir()

    @contextmanager
    def removed(self) -> Iterator[None]:
        away = self.remove()
        try:
            yield
        finally:
            self.put_back(away)

    def keys_argv(self, state_dir: Path, config: Path, *extra: str) -> list[str]:
        """`acmekit server keys` for this token, the PIN from a file."""
        return [
            sys.executable, "-m", "acmekit", "server", "keys",
            "--state-dir", str(state_dir), "--config", str(config),
            "--module", self.module, "--token-label", self.label,
            "--pin-file", str(self.pin_file), *extra,
        ]  # fmt: skip


def softhsm_token(workdir: Path, label: str = "acmekit-ca", pin: str = "1234") -> SoftHsm:
    """A new, initialized token in `workdir` (its own tokendir and configuration)."""
    tokendir = workdir / "tokens"
    tokendir.mkdir(parents=True)
    conf = workdir / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = workdir / "token.pin"
    pin_file.write_text(pin + "\n")
    pin_file.chmod(0o600)
    hsm = SoftHsm(conf, tokendir, label, pin, pin_file)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", pin, "--so-pin", SO_PIN],
        env=hsm.env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return hsm
