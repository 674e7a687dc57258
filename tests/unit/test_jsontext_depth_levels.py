"""`jsontext.depth` walks level by level: the depth it gives is the recursive definition's
(a scalar 0, an array or object one more than its deepest member), over shapes of every
kind, empty containers at each level and siblings of unequal depth included."""

from __future__ import annotations

import random
from typing import Any

from acmekit.protocol import jsontext


def _reference(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_reference, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_reference, value), default=0)
    return 0


def _shape(rng: random.Random, budget: int) -> Any:
    kind = rng.randrange(4) if budget > 0 else 3
    if kind == 0:
        return [_shape(rng, budget - 1) for _ in range(rng.randrange(4))]
    if kind == 1:
        return {f"k{i}": _shape(rng, budget - 1) for i in range(rng.randrange(4))}
    if kind == 2:
        return []
    return rng.choice([0, 1.5, "s", None, True])


def test_depth_is_the_recursive_definitions() -> None:
    rng = random.Random(8259)
    for _ in range(3_000):
        value = _shape(rng, rng.randrange(12))
        assert jsontext.depth(value) == _reference(value), value


def test_depth_of_wide_and_lopsided_values() -> None:
    assert jsontext.depth([[]] * 21_000) == 2
    assert jsontext.depth([0, [0, [0, [{}]]], {"a": 1}]) == 5
    assert jsontext.depth({"a": {}, "b": {"c": [[], [[]]]}}) == 5
    assert jsontext.depth("[[[") == 0
