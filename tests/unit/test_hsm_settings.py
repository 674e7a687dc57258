"""The [hsm] table of the server's TOML file, and where the token's PIN comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.server.config import HsmSettings, load_config
from acmekit.server.hsm import HsmError, read_pin

TABLE = '[hsm]\nmodule = "/lib/p11.so"\ntoken_label = "ca"\nkey_label = "int"\n'


def _load(tmp_path: Path, text: str) -> HsmSettings | None:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    return load_config(path, {}).hsm


def test_no_table_means_a_file_key(tmp_path: Path) -> None:
    assert _load(tmp_path, 'listen = "127.0.0.1:1"\n') is None


def test_the_table_is_read(tmp_path: Path) -> None:
    hsm = _load(tmp_path, TABLE + 'pin_env = "CA_PIN"\n')
    assert hsm == HsmSettings("/lib/p11.so", "ca", "int", pin_env="CA_PIN")


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ("", "exactly one of pin_file and pin_env"),
        ('pin_env = "A"\npin_file = "/p"\n', "exactly one of pin_file and pin_env"),
        ('pin_env = "A"\npin = "1234"\n', "unknown settings in hsm: pin"),
        ("pin_env = 5\n", r"ca\.toml: setting hsm\.pin_env = 5 must be a string$"),
    ],
)
def test_a_table_that_does_not_name_one_pin_source_is_refused(
    tmp_path: Path, extra: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        _load(tmp_path, TABLE + extra)


def test_each_address_part_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"hsm\.key_label must be set"):
        _load(tmp_path, '[hsm]\nmodule = "/m.so"\ntoken_label = "ca"\npin_env = "P"\n')


def test_the_pin_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("s3cret\nignored\n")
    assert read_pin(str(pin_file), None, {}) == "s3cret"
    assert read_pin(None, "CA_PIN", {"CA_PIN": "from-env"}) == "from-env"
    with pytest.raises(HsmError, match="environment variable CA_PIN holds no PIN"):
        read_pin(None, "CA_PIN", {})
    with pytest.raises(HsmError, match=r"PIN file .*No such file"):
        read_pin(str(tmp_path / "missing"), None, {})
    (tmp_path / "empty").write_text("")
    with pytest.raises(HsmError, match="holds no PIN"):
        read_pin(str(tmp_path / "empty"), None, {})
