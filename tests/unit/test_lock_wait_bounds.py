"""`migrate.LockWait` refuses a wait with no try: the revision's DDL would be skipped
while the revision is recorded as applied (0010 without its column, 0011 without its
trigger), and no later upgrade would make them."""

from __future__ import annotations

import pytest

from acmekit.migrate import LockWait


@pytest.mark.parametrize(
    "wait",
    [
        {"tries": 0},
        {"tries": -1},
        {"timeout": 0.0},
        {"pause": -1.0},
    ],
)
def test_a_wait_without_a_try_is_refused(wait: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="LockWait"):
        LockWait(**wait)  # type: ignore[arg-type]


def test_the_default_wait_and_a_single_try_are_taken() -> None:
    assert LockWait().tries == 30
    assert LockWait(timeout=0.05, tries=1, pause=0.0).tries == 1
