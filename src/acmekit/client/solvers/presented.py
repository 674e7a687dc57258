"""What a solver is serving, counted by holder.

Two orders may share one authorization (a CA reuses them), so the same challenge can be
presented twice and cleaned up twice; the answer must stay until the last cleanup.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Presented(Generic[K, V]):
    def __init__(self) -> None:
        self._items: dict[K, tuple[V, int]] = {}

    def add(self, key: K, value: V) -> bool:
        """Serve `value` under `key` (the newest value wins); True for the first holder."""
        _, count = self._items.get(key, (value, 0))
        self._items[key] = (value, count + 1)
        return count == 0

    def release(self, key: K) -> V | None:
        """One holder is done; the value when it was the last one (then it is gone)."""
        found = self._items.get(key)
        if found is None:
            return None
        value, count = found
        if count > 1:
            self._items[key] = (value, count - 1)
            return None
        del self._items[key]
        return value

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        return None if found is None else found[0]

    def keys(self) -> list[K]:
        return list(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
