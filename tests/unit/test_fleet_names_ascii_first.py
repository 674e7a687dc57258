"""A fleet site's names (the API's and the CLI's) are checked before they are folded:
the Kelvin sign (U+212A) lower-cases to ASCII "k", so "\u212aexample.test" was stored as
"kexample.test"; and a label checked with `re.match` and `$` passed with a final newline."""

from __future__ import annotations

import pytest

from acmekit.fleet.model import normalize_names


@pytest.mark.parametrize(
    "raw",
    ["\u212aexample.test", "*.\u212aexample.test", "a\n.example.test", "a.example.test\n.x"],
    ids=["kelvin", "kelvin-wildcard", "newline-label", "newline-inner"],
)
def test_a_name_folding_into_another_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a DNS name"):
        normalize_names([raw])


def test_ascii_names_are_folded_as_before() -> None:
    assert normalize_names([" WWW.Example.TEST. ", "*.example.test", "www.example.test"]) == (
        "www.example.test",
        "*.example.test",
    )
