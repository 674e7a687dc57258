"""Names an operator gives (CAA identities, issuer domain names, listener hosts, special
names allowed, a perspective's `--allow-special-name`, `certs list --name`, a fleet
site's names) are checked as a dns identifier is before they are lower-cased: letters,
digits and hyphens in ASCII, each `xn--` label a valid IDNA 2008 A-label, no reserved
`??--` label (RFC 5890 §2.3.2.1, RFC 5891 §4.2.3.1). Each was only checked as ASCII, or
not at all, so a broken A-label or a name no identifier could ever match was taken
silently (`certs list --name` folded the Kelvin sign, U+212A, into "k"). A bad value is
refused in one line that names where it came from and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from acmekit.cli.fleet import fleet
from acmekit.cli.server import server
from acmekit.fleet.model import normalize_names
from acmekit.protocol.dnslabels import operator_name
from acmekit.server.config import load_config

BAD = {
    "broken-alabel": ("xn--zz.example", "label 'xn--zz' is not a valid IDNA 2008 A-label"),
    "reserved-ldh": ("ab--cd.example", "label 'ab--cd' is in a reserved form"),
    "space": ("ca example.test", "label has characters other than letters, digits"),
    "underscore": ("ca_1.example", "label has characters other than letters, digits"),
    "empty-label": ("ca..example", "empty label"),
    "hyphen-edge": ("-ca.example", "label starts or ends with a hyphen"),
    "wildcard": ("*.example.test", "a wildcard is not allowed here"),
    "kelvin": ("ca.\u212aexample.test", "is not ASCII"),
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


SETTINGS = {
    "caa_identities": 'caa_identities = ["{v}"]',
    "issuer_domain_names": 'caa_identities = ["a.test"]\nissuer_domain_names = ["{v}"]',
    "listener_hosts": 'listener_hosts = ["{v}"]',
    "validation.allowed_special_names": '[validation]\nallowed_special_names = ["{v}"]',
}


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
@pytest.mark.parametrize("where", list(SETTINGS), ids=[w.split(".")[-1] for w in SETTINGS])
def test_a_bad_name_in_the_settings_is_refused_in_one_line(
    tmp_path: Path, where: str, bad: str
) -> None:
    value, why = BAD[bad]
    with pytest.raises(ValueError) as got:
        load_config(_write(tmp_path, SETTINGS[where].format(v=value)), {})
    message = str(got.value)
    assert "\n" not in message
    assert message.startswith(f"{where}: {value!r}"), message
    assert why in message


def test_a_bad_special_name_given_as_a_flag_is_refused() -> None:
    with pytest.raises(ValueError, match=r"allowed_special_names: 'xn--zz': label 'xn--zz'"):
        load_config(None, {"allowed_special_names": ("xn--zz",)})


def test_good_names_are_read_lower_cased(tmp_path: Path) -> None:
    text = (
        'caa_identities = ["CA.Example.TEST.", "acmekit", "xn--bcher-kva.example"]\n'
        'issuer_domain_names = ["ca.example.test"]\n'
        'listener_hosts = ["LocalHost", "::1", "127.0.0.1", "CA.Example.TEST"]\n'
        '[validation]\nallowed_special_names = [".Test", "Home.Arpa."]\n'
    )
    config = load_config(_write(tmp_path, text), {})
    assert config.caa_identities == ("ca.example.test", "acmekit", "xn--bcher-kva.example")
    assert config.persist_issuers == ("ca.example.test",)
    assert config.listener_hosts == ("localhost", "::1", "127.0.0.1", "ca.example.test")
    assert config.validation.allowed_special_names == ("test", "home.arpa")


def test_a_perspective_special_name_is_checked_as_a_name(tmp_path: Path) -> None:
    args = ["perspective", "--listen", "127.0.0.1:0", "--name", "p", "--rir", "ARIN"]
    args += ["--state-dir", str(tmp_path), "--allow-special-name", "xn--zz"]
    got = CliRunner().invoke(server, args)
    assert got.exit_code == 1, got.output
    assert "--allow-special-name: 'xn--zz': label 'xn--zz' is not a valid IDNA" in got.output


@pytest.mark.parametrize(
    "value",
    ["\u212aexample.test", "xn--zz.example", "a b.example"],
    ids=["kelvin", "broken-alabel", "space"],
)
def test_certs_list_refuses_a_name_no_certificate_has(tmp_path: Path, value: str) -> None:
    db = f"sqlite:///{tmp_path / 'ca.db'}"
    args = ["certs", "list", "--name", value, "--state-dir", str(tmp_path), "--db", db]
    got = CliRunner().invoke(server, args)
    assert got.exit_code == 2, got.output
    assert "--name" in got.output and repr(value) in got.output


@pytest.mark.parametrize(
    "raw", ["xn--zz.example.test", "*.xn--zz.example.test", "ab--cd.example.test"]
)
def test_a_fleet_site_name_with_a_bad_alabel_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"is not a DNS name: .*(IDNA 2008|reserved form)"):
        normalize_names([raw])


def test_a_fleet_site_name_with_a_good_alabel_is_kept() -> None:
    assert normalize_names(["XN--BCHER-KVA.example.test"]) == ("xn--bcher-kva.example.test",)


def test_operator_name_takes_one_label_only_when_asked() -> None:
    assert operator_name("w", "Test", single_label=True) == "test"
    with pytest.raises(ValueError, match="w: 'test': name must have at least two labels"):
        operator_name("w", "test")


def test_a_fleet_site_is_not_found_by_a_name_that_folds_into_its_own(tmp_path: Path) -> None:
    """`fleet remove` (and `status`) find a site by its first name: lower-cased whole,
    "\u212aexample.test" found kexample.test's site, and removed it."""
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    added = CliRunner().invoke(fleet, ["add", "--db", db, "kexample.test"])
    assert added.exit_code == 0, added.output
    got = CliRunner().invoke(fleet, ["remove", "--db", db, "\u212aexample.test"])
    assert got.exit_code == 1, got.output
    assert "no site '\u212aexample.test'" in got.output
    got = CliRunner().invoke(fleet, ["remove", "--db", db, "KExample.test"])
    assert got.exit_code == 0, got.output
    assert "kexample.test: removing" in got.output
