"""Dataclasses frozen for the type checker, plain at run time.

A frozen dataclass's `__init__` sets each field through `object.__setattr__`, about a
thousand instructions a field in CPython 3.11, where a plain one stores it directly.
The few values built on every request (the app's Request, the parsed Jws, the
Authenticated result) are declared with `frozen_for_mypy`: mypy, strict on src/, holds
them to frozen (assigning a field is a type error, as with `frozen=True`), and at run
time they are plain dataclasses. Their fields hold dicts, so they were unhashable frozen
too; what changes at run time is only that an assignment no one makes would not raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def frozen_for_mypy(cls: type[T]) -> type[T]:
    return dataclass(cls)


__all__ = ["frozen_for_mypy"]
