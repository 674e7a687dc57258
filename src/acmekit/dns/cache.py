"""The handler's cache of whole responses, bounded by the octets it holds.

A bound by count alone let a cache of 4,096 entries hold 300 MB: a key carried the
query's whole tail (a 60 KB EDNS option) and a value could be a 64 KB TCP answer. Here
an entry costs the octets of its key and value plus `ENTRY_OVERHEAD` for the Python
objects around them, the total stays at or below `max_bytes`, and the oldest entries
are dropped to make room for a new one (UDP and TCP answers share the one bound). An
entry costing more than a sixteenth of the bound is not kept. `clear()` empties it when
the store changes. Which queries are cached at all is the handler's affair.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

CACHE_BYTES = 4 << 20
ENTRY_OVERHEAD = 160  # a dict slot, the key's tuple, two bytes objects' headers
K = TypeVar("K", bound=Hashable)


class ResponseCache(Generic[K]):
    """Responses by key, at most `max_bytes` octets of keys, values and overhead."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: dict[K, tuple[bytes, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> bytes | None:
        found = self._entries.get(key)
        return None if found is None else found[0]

    def put(self, key: K, value: bytes, key_size: int) -> None:
        """Keep `value` under `key` (whose octets are `key_size`), dropping the oldest
        entries to make room; an entry too large for the cache is not kept."""
        cost = key_size + len(value) + ENTRY_OVERHEAD
        if cost > self.max_bytes // 16:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        while self._entries and self.bytes + cost > self.max_bytes:
            oldest = next(iter(self._entries))  # dicts keep insertion order
            self.bytes -= self._entries.pop(oldest)[1]
        self._entries[key] = (value, cost)
        self.bytes += cost

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
