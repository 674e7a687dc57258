"""The listener's Date header line (acmekit.http1.imf_fixdate): IMF-fixdate (RFC 9110
§5.6.7) from tables, the same text `email.utils.formatdate(usegmt=True)` writes."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from acmekit.http1 import DATE, imf_fixdate

FIRST, LAST = -62135596800, 253402300799  # 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z


@pytest.mark.parametrize(
    ("second", "text"),
    [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (784111777, "Sun, 06 Nov 1994 08:49:37 GMT"),  # RFC 9110 §5.6.7's example
        (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (FIRST, "Mon, 01 Jan 0001 00:00:00 GMT"),
        (-30610224001, "Tue, 31 Dec 0999 23:59:59 GMT"),
        (LAST, "Fri, 31 Dec 9999 23:59:59 GMT"),
    ],
)
def test_imf_fixdate_writes_each_field(second: int, text: str) -> None:
    assert imf_fixdate(second) == f"date: {text}\r\n".encode()


def test_imf_fixdate_is_formatdate() -> None:
    """What `formatdate` writes, over random seconds of every year 1-9999."""
    rng = random.Random(9110)
    for _ in range(20_000):
        second = rng.randrange(FIRST, LAST + 1)
        assert imf_fixdate(second) == f"date: {formatdate(second, usegmt=True)}\r\n".encode()


def test_the_listeners_line_is_the_current_seconds() -> None:
    before = int(time.time())
    line = DATE.line()
    assert line in {imf_fixdate(before), imf_fixdate(int(time.time()))}
