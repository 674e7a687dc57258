"""A list of names is judged only as far as it takes to know it is too long: an API
request body of a megabyte holds some 60,000 names, and deduplicating them all one
against another (before the count was checked) held the event loop, which the
certificate endpoint and the http-01 responder share, for seconds per request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from acmekit.fleet.model import MAX_NAMES, normalize_names


def test_a_long_list_is_refused_at_its_first_name_too_many() -> None:
    read = 0

    def names() -> Iterator[str]:
        nonlocal read
        for i in range(10_000):
            read += 1
            yield f"n{i}.many.test"

    with pytest.raises(ValueError, match=f"1 to {MAX_NAMES} names"):
        normalize_names(names())
    assert read == MAX_NAMES + 1


def test_duplicates_count_once() -> None:
    names = [f"n{i % MAX_NAMES}.many.test" for i in range(3 * MAX_NAMES)]
    assert len(normalize_names(names)) == MAX_NAMES
    assert normalize_names(["A.many.test", "a.many.test."]) == ("a.many.test",)
