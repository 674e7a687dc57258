"""The CA's dns-persist-01 and dns-account-01 settings: off by default, per profile,
issuer names within the CAA identities (draft-ietf-acme-dns-persist-02 §3.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.server.config import ServerConfig, load_config


def _load(tmp_path: Path, text: str) -> ServerConfig:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    return load_config(path, {})


def test_off_unless_turned_on(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert not config.offers_dns_persist
    assert not any(p.dns_account_01 for p in config.all_profiles.values())


def test_on_per_profile_with_issuer_names(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        'caa_identities = ["CA.example.", "other.example"]\n'
        'issuer_domain_names = ["ca.example"]\n'
        'account_hash_prefix = "https://ca.example/hash/"\n'
        "[profiles.tlsserver]\ndns_persist_01 = true\ndns_account_01 = true\n",
    )
    assert config.offers_dns_persist
    assert config.all_profiles["tlsserver"].dns_persist_01
    assert not config.all_profiles["classic"].dns_persist_01
    assert config.persist_issuers == ("ca.example",)
    assert config.persist_hash_prefix("https://ignored") == "https://ca.example/hash/"
    top = _load(tmp_path, "dns_persist_01 = true\n")
    assert top.all_profiles["classic"].dns_persist_01
    assert top.persist_issuers == ("acmekit",)  # the CAA identities by default
    assert top.persist_hash_prefix("https://ca.test/") == "https://ca.test/acme/account-hash/"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('issuer_domain_names = ["elsewhere.example"]', "must also be in caa_identities"),
        ("issuer_domain_names = [" + ", ".join(f'"n{i}.x"' for i in range(11)) + "]", "10"),
        ('dns_persist_01 = "yes"', "dns_persist_01"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        _load(tmp_path, text)
