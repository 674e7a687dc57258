"""The server's settings: a wrong type, a database URL it cannot use, or a HOST:PORT that
is not one is refused when the server starts, with a message that names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.server.config import load_config


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('validation_timeout = "x"', "validation_timeout"),
        ('eab_required = "yes"', "eab_required"),
        ("listen = 14000", "listen"),
        ('[rate_limits]\nenabled = "yes"', "rate_limits.enabled"),
        ('[caa]\nrecheck_after = "8h"', "caa.recheck_after"),
        ('[keys]\nrsa_min_bits = "2048"', "keys.rsa_min_bits"),
        ('db = "mysql://x"', "sqlite:///FILE"),
        ('dns_resolver = "127.0.0.1"', "port is missing"),
        ('[validation]\nallow_networks = ["10.0.0.1/8"]', "'10.0.0.1/8' is not a network"),
        ('[validation]\nallow_networks = "127.0.0.0/8"', "validation.allow_networks"),
        ('[rate_limits]\npending_authorizations_per_account = "many"', "pending_author"),
        ('[eab_keys]\nkid-1 = "c2VjcmV0+/=="', "eab_keys.kid-1"),
        ('[eab_keys]\nkid-2 = ""', "eab_keys.kid-2"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ValueError) as err:
        load_config(_toml(tmp_path, text), {})
    assert words in str(err.value)


def test_good_settings_load(tmp_path: Path) -> None:
    config = load_config(
        _toml(
            tmp_path,
            'validation_timeout = 3\ndns_resolver = "127.0.0.1:53"\n[caa]\nenabled = false',
        ),
        {"state_dir": tmp_path, "http01_port": 5002},
    )
    assert (config.validation_timeout, config.http01_port, config.caa.enabled) == (3, 5002, False)


def test_validation_exceptions_come_from_the_file_and_the_flags(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[validation]\nallow_networks = ["127.0.0.1/32"]\n')
    flags = {"allow_networks": ("::1/128",), "allowed_special_names": ("Test.",)}
    config = load_config(path, flags)
    assert config.validation.allow_networks == ("127.0.0.1/32", "::1/128")
    assert config.validation.allowed_special_names == ("test",)
    assert config.validation_config().allow_networks == ("127.0.0.1/32", "::1/128")


def test_by_default_nothing_reserved_is_allowed() -> None:
    config = load_config(None, {"allow_networks": (), "allowed_special_names": ()})
    assert config.validation.allow_networks == ()
    assert config.validation.allowed_special_names == ()
    assert config.rate_limits.pending_authorizations_per_account == 1000
