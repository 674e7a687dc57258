"""The Baseline Requirements' SC-081 schedule (acmekit.server.schedule) at each step, and
the profile settings it reads from the configuration file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from acmekit.server.config import Profile, ServerConfig, load_config
from acmekit.server.schedule import check_profiles, step_at, violations

DAY = timedelta(days=1)

# (the first day of a step, the maximum validity and reuse before it, and from it on)
STEPS = [
    (datetime(2026, 3, 15, tzinfo=UTC), (398, 398), (200, 200)),
    (datetime(2027, 3, 15, tzinfo=UTC), (200, 200), (100, 100)),
    (datetime(2029, 3, 15, tzinfo=UTC), (100, 100), (47, 10)),
]


@pytest.mark.parametrize(("first", "before", "after"), STEPS)
def test_each_step_starts_at_midnight_utc(
    first: datetime, before: tuple[int, int], after: tuple[int, int]
) -> None:
    last_second = first - timedelta(seconds=1)
    assert (step_at(last_second).max_validity, step_at(last_second).max_reuse) == (
        before[0] * DAY,
        before[1] * DAY,
    )
    assert (step_at(first).max_validity, step_at(first).max_reuse) == (
        after[0] * DAY,
        after[1] * DAY,
    )


def test_a_local_time_is_read_in_utc() -> None:
    # 2026-03-15 00:30 at UTC+1 is still 2026-03-14 in UTC: the old limit.
    early = datetime(2026, 3, 15, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert step_at(early).max_validity == 398 * DAY


@pytest.mark.parametrize(("first", "before", "after"), STEPS)
def test_lifetimes_at_the_limit_pass_the_day_before_and_fail_on_the_day(
    first: datetime, before: tuple[int, int], after: tuple[int, int]
) -> None:
    # The largest lifetime allowed before the step: its validity, counted inclusively
    # (BR §1.6.1), is exactly the old maximum.
    old = Profile(
        "x",
        certificate_lifetime=before[0] * DAY - timedelta(seconds=1),
        valid_authz_lifetime=before[1] * DAY,
    )
    assert violations("p", old, first - timedelta(seconds=1)) == []
    found = violations("p", old, first)
    assert len(found) == 2
    assert f"{after[0]} days maximum validity" in found[0]
    assert f"{after[1]} days reuse" in found[1]


def test_a_lifetime_of_exactly_the_limit_is_one_second_too_long() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert violations("p", Profile("x", certificate_lifetime=200 * DAY), at)
    assert not violations("p", Profile("x", certificate_lifetime=199 * DAY), at)


def test_authz_reuse_is_checked_beside_the_authorization_lifetime() -> None:
    at = datetime(2029, 3, 15, tzinfo=UTC)
    ok = Profile("x", timedelta(days=45), valid_authz_lifetime=10 * DAY, authz_reuse=7 * DAY)
    assert violations("p", ok, at) == []
    over = Profile("x", timedelta(days=45), valid_authz_lifetime=10 * DAY, authz_reuse=11 * DAY)
    (line,) = violations("p", over, at)
    assert line.startswith("profile 'p': authz_reuse 11 days exceeds the 10 days")
    assert "§4.2.1" in line and "from 2029-03-15" in line


def test_check_profiles_raises_one_line_naming_profile_setting_and_limit() -> None:
    profiles = {**ServerConfig().all_profiles, "long": Profile("x", timedelta(days=400))}
    with pytest.raises(ValueError) as err:
        check_profiles(profiles, datetime(2025, 12, 1, tzinfo=UTC))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("profile 'long': certificate_lifetime 400 days")
    assert "398 days maximum validity" in text and "§6.3.2" in text
    assert "before 2026-03-15" in text


def test_the_built_in_profiles_pass_until_2029() -> None:
    profiles = ServerConfig().all_profiles
    check_profiles(profiles, datetime(2029, 3, 14, 23, 59, tzinfo=UTC))
    # From 2029-03-15 the default `classic` (90 days, 30-day authorizations) is refused,
    # `tlsserver` and `shortlived` still pass.
    with pytest.raises(ValueError, match="profile 'classic': certificate_lifetime 90 days"):
        check_profiles(profiles, datetime(2029, 3, 15, tzinfo=UTC))
    for name in ("tlsserver", "shortlived"):
        assert violations(name, profiles[name], datetime(2029, 3, 15, tzinfo=UTC)) == []


def test_toml_profile_reuse_shape_and_lint_settings(tmp_path: Path) -> None:
    path = tmp_path / "ca.toml"
    path.write_text(
        "[profiles.classic]\n"
        "authz_reuse = 864000\n"
        "[profiles.minimal]\n"
        'description = "minimal"\n'
        "certificate_lifetime = 3888000\n"
        "common_name = false\n"
        "subject_key_identifier = false\n"
        "client_auth = false\n"
        "[lint]\n"
        "enabled = true\n"
        'ignored = ["cabf.serverauth.dv.common_name_attribute_present"]\n'
    )
    config = load_config(path, {})
    assert config.all_profiles["classic"].authz_reuse == 10 * DAY
    assert config.all_profiles["classic"].certificate_lifetime == 90 * DAY
    minimal = config.all_profiles["minimal"]
    assert minimal.certificate_lifetime == 45 * DAY and minimal.authz_reuse is None
    assert (minimal.common_name, minimal.subject_key_identifier, minimal.client_auth) == (
        False,
        False,
        False,
    )
    assert config.lint.ignored == ("cabf.serverauth.dv.common_name_attribute_present",)


@pytest.mark.parametrize(
    "text",
    ['[profiles.classic]\nauthz_reuse = "10d"\n', "[lint]\nenabled = 1\n", "[lint]\nnope = 1\n"],
)
def test_toml_mistakes_in_new_settings_are_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    with pytest.raises(ValueError):
        load_config(path, {})
