"""A Retry-After HTTP-date is ASCII (RFC 9110 §5.6.7): the email parser reads each field
with int(), so "Sat, \\u0660\\u0665 Dec 2026 ..." (ARABIC-INDIC DIGITs) was 5 December
2026, while delay-seconds of those digits were already refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from acmekit.client.retry import parse_retry_after

NOW = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "Sat, \u0660\u0665 Dec 2026 00:01:00 GMT",
        "Sat, 05 Dec \u0662\u0660\u0662\u0666 00:01:00 GMT",
        "Sat, 05 Dec 2026 00:0\u0661:00 GMT",
    ],
)
def test_an_http_date_of_other_digits_is_unparseable(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("Sat, 05 Dec 2026 00:01:00 GMT", 60.0),  # IMF-fixdate
        ("Saturday, 05-Dec-26 00:01:00 GMT", 60.0),  # obsolete RFC 850, still accepted
        ("Sat Dec  5 00:01:00 2026", 60.0),  # asctime
        (" \t120 ", 120.0),
    ],
)
def test_an_ascii_retry_after_is_read(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds
