"""JSON from the network: nesting is bounded, and every fault is malformed."""

from __future__ import annotations

import pytest

from acmekit.protocol import jsontext
from acmekit.protocol.problems import AcmeError, ProblemType


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 100_000 + b"]" * 100_000,
        "{" + '"a":{' * 200_000 + "}" * 200_001,
        b"[" * (jsontext.MAX_DEPTH + 1) + b"]" * (jsontext.MAX_DEPTH + 1),
        b"{nope",
        b"\xff\xfe",
    ],
    ids=["deep-array", "deep-object", "just-past-bound", "invalid", "not-utf8"],
)
def test_refused_as_malformed(text: bytes | str) -> None:
    with pytest.raises(AcmeError) as caught:
        jsontext.loads(text, "payload")
    assert caught.value.problem.type == ProblemType.MALFORMED
    assert "payload" in caught.value.problem.detail


def test_many_brackets_side_by_side_are_not_depth() -> None:
    text = "[" + ",".join(["[1]"] * 1000) + "]"
    assert len(jsontext.loads(text)) == 1000


def test_depth_bound_is_inclusive() -> None:
    n = jsontext.MAX_DEPTH
    assert jsontext.depth(jsontext.loads(b"[" * n + b"]" * n)) == n


def test_depth_counts_objects_and_arrays() -> None:
    assert jsontext.depth(1) == 0
    assert jsontext.depth({"a": [1, {"b": []}]}) == 4
