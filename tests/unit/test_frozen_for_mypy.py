"""The request path's values declared with `frozen_for_mypy` (the app's Request, the
parsed Jws, the Authenticated result): plain dataclasses at run time, with the fields,
defaults, equality and repr the frozen ones had; unhashable, as they were (each holds a
dict). That assigning a field is refused is mypy's part (strict on src/)."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from acmekit.protocol.frozen import frozen_for_mypy
from acmekit.protocol.jose import Jws
from acmekit.server.app import Request
from acmekit.server.auth import Authenticated
from acmekit.server.render import Urls

CLASSES = [Request, Jws, Authenticated]


def _frozen(cls: type) -> type:
    """The same fields as a frozen dataclass."""
    return dataclasses.make_dataclass(
        cls.__name__,
        [(f.name, Any, dataclasses.field(default=f.default)) for f in dataclasses.fields(cls)],
        frozen=True,
    )


@pytest.mark.parametrize("cls", CLASSES)
def test_the_same_constructor_equality_and_repr(cls: type) -> None:
    frozen = _frozen(cls)
    ours, theirs = inspect.signature(cls), inspect.signature(frozen)
    assert [(p.name, p.default) for p in ours.parameters.values()] == [
        (p.name, p.default) for p in theirs.parameters.values()
    ]
    values = [{"a": 1}, *[f"v{i}" for i in range(len(dataclasses.fields(cls)) - 1)]]
    assert vars(cls(*values)) == vars(frozen(*values))
    assert repr(cls(*values)) == repr(frozen(*values))
    assert cls(*values) == cls(*values) and cls(*values) != cls(*values[:-1], "other")
    with pytest.raises(TypeError):  # a dict among the fields: as when frozen
        hash(frozen(*values))
    with pytest.raises(TypeError):
        hash(cls(*values))


def test_a_request_reads_as_before() -> None:
    req = Request("POST", "/acme/order/1", {"host": "ca.test"}, b"{}", Urls("https://ca.test"))
    assert req.url == "https://ca.test/acme/order/1" and req.client is None and req.query == ""
    assert dataclasses.is_dataclass(frozen_for_mypy(type("Empty", (), {})))
