"""Profile selection and the configuration file's policy tables."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError
from acmekit.server.config import Limit, Profile, ServerConfig, load_config
from acmekit.server.profiles import check_identifiers, descriptions, select_profile

PROFILES = ServerConfig().all_profiles


def test_defaults_model_lets_encrypt() -> None:
    assert set(PROFILES) == {"classic", "shortlived", "tlsserver"}
    assert PROFILES["classic"].certificate_lifetime == timedelta(days=90)
    assert PROFILES["shortlived"].certificate_lifetime == timedelta(hours=160)
    assert PROFILES["shortlived"].valid_authz_lifetime == timedelta(hours=7)
    assert PROFILES["tlsserver"].certificate_lifetime == timedelta(days=45)
    assert PROFILES["tlsserver"].authz_reuse == timedelta(hours=7)
    assert not PROFILES["tlsserver"].ip_identifiers
    assert set(descriptions(PROFILES)) == {"classic", "shortlived", "tlsserver"}


def test_select_default_named_and_unknown() -> None:
    assert select_profile(None, PROFILES, "classic")[0] == "classic"
    assert select_profile("shortlived", PROFILES, "classic") == (
        "shortlived",
        PROFILES["shortlived"],
    )
    with pytest.raises(AcmeError) as err:
        select_profile("nosuch", PROFILES, "classic")
    assert err.value.problem.type.endswith(":invalidProfile")
    with pytest.raises(AcmeError) as err:
        select_profile(7, PROFILES, "classic")
    assert err.value.problem.type.endswith(":malformed")


def test_profile_without_ip_identifiers() -> None:
    profiles = {**PROFILES, "strict": Profile("no IPs", ip_identifiers=False)}
    ip = Identifier(IdentifierType.IP, "127.0.0.1")
    dns = Identifier(IdentifierType.DNS, "a.test")
    check_identifiers("strict", profiles, [dns])
    with pytest.raises(AcmeError) as err:
        check_identifiers("strict", profiles, [dns, ip])
    assert err.value.problem.type.endswith(":rejectedIdentifier")
    assert err.value.problem.identifier == {"type": "ip", "value": "127.0.0.1"}
    check_identifiers("shortlived", profiles, [ip])


def test_ip_refusal_names_the_profile_that_allows_it() -> None:
    ip = Identifier(IdentifierType.IP, "127.0.0.1")
    with pytest.raises(AcmeError) as err:
        check_identifiers("classic", PROFILES, [ip])
    detail = err.value.problem.detail or ""
    assert "'classic' does not allow IP" in detail
    assert "--preferred-profile shortlived" in detail
    alone = {"classic": PROFILES["classic"]}
    with pytest.raises(AcmeError) as err:
        check_identifiers("classic", alone, [ip])
    assert "preferred-profile" not in (err.value.problem.detail or "")


def test_toml_policy_tables(tmp_path: Path) -> None:
    path = tmp_path / "ca.toml"
    path.write_text(
        """
default_profile = "shortlived"
[rate_limits]
enabled = true
[rate_limits.certificates_per_domain]
count = 20
overrides = { "big.example" = 1000 }
[rate_limits.failed_validations]
period = 7200
[profiles.classic]
ip_identifiers = false
[profiles.tiny]
description = "one day"
certificate_lifetime = 86400
[crl]
shards = 8
regenerate_every = 60
[ari]
retry_after = 3600
"""
    )
    config = load_config(path, {"crl_listen": "127.0.0.1:9999"})
    limits = config.rate_limits
    assert limits.certificates_per_domain == Limit(20, timedelta(days=7), {"big.example": 1000})
    assert limits.failed_validations == Limit(5, timedelta(hours=2))
    assert limits.new_orders_per_account == Limit(300, timedelta(hours=3))
    profiles = config.all_profiles
    assert profiles["classic"].ip_identifiers is False
    assert profiles["classic"].certificate_lifetime == timedelta(days=90)
    assert profiles["tiny"].certificate_lifetime == timedelta(days=1)
    assert config.default_profile == "shortlived"
    assert config.crl.shards == 8 and config.crl.regenerate_every == timedelta(minutes=1)
    assert config.crl.listen == "127.0.0.1:9999"
    assert config.crl_base_url == "http://127.0.0.1:9999"
    assert config.ari.retry_after == timedelta(hours=1)


@pytest.mark.parametrize(
    "text",
    [
        "[rate_limits.certificates_per_week]\ncount = 1\n",
        "[rate_limits.certificates_per_domain]\nburst = 1\n",
        "[crl]\nshard = 2\n",
        'default_profile = "missing"\n',
    ],
)
def test_toml_mistakes_are_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    with pytest.raises(ValueError):
        load_config(path, {})
