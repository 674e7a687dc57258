"""Names in the server's settings (CAA identities, issuer domain names, listener hosts,
special names) are lower-cased to be compared, and a perspective's RIR upper-cased:
each is checked as ASCII first. The Kelvin sign (U+212A) lower-cases to "k" and the dotless
i (U+0131) upper-cases to "I", so "ca.\u212aexample.test" stood for ca.kexample.test in
CAA checks and "ar\u0131n" for ARIN."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from acmekit.cli.server import server
from acmekit.server.config import load_config

KELVIN = "ca.\u212aexample.test"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f'caa_identities = ["{KELVIN}"]', "caa_identities"),
        (f'caa_identities = ["a.test"]\nissuer_domain_names = ["{KELVIN}"]', "issuer_domain_names"),
        (f'listener_hosts = ["{KELVIN}"]', "listener_hosts"),
        (f'[validation]\nallowed_special_names = ["{KELVIN}"]', "allowed_special_names"),
    ],
    ids=["caa", "issuer", "listener", "special"],
)
def test_a_non_ascii_name_in_the_settings_is_refused(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ValueError, match=f"{where}: .* is not ASCII"):
        load_config(_write(tmp_path, text), {})


def test_ascii_names_are_read_as_before(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, 'caa_identities = ["CA.Kexample.test."]'), {})
    assert config.persist_issuers == ("ca.kexample.test",)


def test_a_rir_is_upper_cased_only_when_ascii(tmp_path: Path) -> None:
    text = (
        "[mpic]\nenabled = true\nperspectives = [\n"
        '  { url = "https://10.0.0.1:8443", name = "a", rir = "ar\u0131n" },\n'
        '  { url = "https://10.0.0.2:8443", name = "b", rir = "ripe" },\n]\n'
    )
    with pytest.raises(ValueError, match="is not one of"):
        load_config(_write(tmp_path, text), {})
    config = load_config(_write(tmp_path, text.replace("ar\u0131n", "arin")), {})
    assert [p.rir for p in config.mpic.perspectives] == ["ARIN", "RIPE"]


def test_a_perspective_special_name_is_ascii(tmp_path: Path) -> None:
    args = ["perspective", "--listen", "127.0.0.1:0", "--name", "p", "--rir", "ARIN"]
    args += ["--state-dir", str(tmp_path)]
    got = CliRunner().invoke(server, [*args, "--allow-special-name", KELVIN])
    assert got.exit_code == 1, got.output
    assert "--allow-special-name: 'ca.\u212aexample.test' is not ASCII" in got.output
