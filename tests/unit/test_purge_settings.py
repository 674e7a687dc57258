"""`[purge]` in the server's TOML file: its durations in seconds, its bounds, and the
grace in force raised to any profile's longer order_lifetime (server/purge.py says why);
and the cutoffs it gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.database import to_us
from acmekit.server.config import PurgeSettings, load_config
from acmekit.server.purge import LONGEST_VALIDITY, cutoffs


def _load(tmp_path: Path, text: str) -> PurgeSettings:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    return load_config(path, {}).purge


def test_the_table_sets_the_purge(tmp_path: Path) -> None:
    text = "[purge]\nenabled = false\ngrace = 864000\nretention = 86400\nbatch = 50\nevery = 5\n"
    found = _load(tmp_path, text)
    assert found == PurgeSettings(
        enabled=False,
        grace=timedelta(days=10),
        retention=timedelta(days=1),
        batch=50,
        batches=1,
        every=timedelta(seconds=5),
    )
    assert _load(tmp_path, "") == PurgeSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[purge]\nbatch = 0\n", "purge.batch = 0 must be a whole number from 1 to 10000"),
        ("[purge]\nbatch = 1.5\n", "purge.batch = 1.5 must be a whole number from 1 to 10000"),
        # PostgreSQL takes 65,535 parameters at most: the authorizations' batch failed.
        ("[purge]\nbatch = 70000\n", "purge.batch = 70000 must be a whole number from 1"),
        ("[purge]\nbatches = 2.5\n", "purge.batches = 2.5 must be a whole number from 1"),
        ("[purge]\nevery = 0\n", "purge.every = 0 must be from 1 seconds to 100 years"),
        ("[purge]\nretention = -1\n", "purge.retention = -1 must be from 0 seconds"),
        ("[purge]\nretention = 1e11\n", "purge.retention = 1e+11 must be from 0 seconds"),
        ("[purge]\ngrace = 1e11\n", "purge.grace = 1e+11 must be from 0 seconds to 100 years"),
        ("[purge]\ngrace = 1e20\n", "purge.grace = 1e+20 must be a number of seconds that"),
        ("[purge]\nevery = inf\n", "purge.every = inf must be a number of seconds that"),
        ("[purge]\nkeep = 1\n", "unknown settings in purge: keep"),
    ],
    ids=[
        "batch",
        "batch-fraction",
        "batch-too-large",
        "batches-fraction",
        "every",
        "retention",
        "retention-too-long",
        "grace-too-long",
        "grace-past-dates",
        "every-infinite",
        "unknown",
    ],
)
def test_bad_purge_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    """In one line, naming the setting: each of these failed every purge (or, past a
    date's range, the start with an OverflowError)."""
    with pytest.raises(ValueError) as caught:
        _load(tmp_path, text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_largest_settings_allowed_give_cutoffs(tmp_path: Path) -> None:
    text = "[purge]\nbatch = 10000\nbatches = 1000\ngrace = 3153600000\nretention = 3153600000\n"
    settings = _load(tmp_path, text)
    cut = cutoffs(settings, datetime(2027, 1, 1, tzinfo=UTC))
    assert cut.validated < cut.orders < 0


@pytest.mark.parametrize(
    ("text", "grace"),
    [
        ("[purge]\ngrace = 86400\n", timedelta(days=7)),  # classic's order_lifetime
        ("[profiles.long]\norder_lifetime = 3000000\n", timedelta(seconds=3000000)),
        ("[purge]\ngrace = 5184000\n", timedelta(days=60)),
    ],
    ids=["below-classic", "below-a-profile", "above-all"],
)
def test_the_grace_in_force_is_at_least_every_order_lifetime(
    tmp_path: Path, text: str, grace: timedelta
) -> None:
    """A configuration whose orders outlive the grace still starts, its grace raised."""
    path = tmp_path / "ca.toml"
    path.write_text(text)
    assert load_config(path, {}).purge_settings().grace == grace


def test_a_validated_authorization_waits_for_the_longest_validity_and_the_retention() -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    cut = cutoffs(PurgeSettings(), now)
    assert cut.orders == cut.authorizations == to_us(now - timedelta(days=30))
    assert cut.validated == to_us(now - LONGEST_VALIDITY - timedelta(days=730))
    assert cut.buckets == to_us(now - timedelta(minutes=10))
    # As the rate limiter, by the database's clock (less the same skew) where it reads it.
    by_database = cutoffs(PurgeSettings(), now, database_clock=True)
    assert by_database.buckets is None
    assert by_database.skew == 10 * 60 * 1_000_000
    assert timedelta(days=398) == LONGEST_VALIDITY
