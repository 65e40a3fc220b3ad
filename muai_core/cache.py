"""An LRU of loaded models, bounded by count and optionally by bytes, that unloads on eviction."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LRUCache(Generic[T]):
    """Holds at most ``capacity`` entries and ``max_bytes`` bytes (``None``: no byte bound).

    The least recently used entries are handed to ``on_evict`` until both bounds hold; the entry just
    put is never evicted by its own put.
    """

    def __init__(self, capacity: int, on_evict: Callable[[str, T], None], max_bytes: int | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._on_evict = on_evict
        self._entries: OrderedDict[str, tuple[T, int]] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: str) -> T | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def peek(self, key: str) -> T | None:
        """The entry, without making it the most recently used."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry[0]

    def put(self, key: str, value: T, size: int = 0) -> None:
        with self._lock:
            self._entries[key] = (value, size)
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and (len(self._entries) > self.capacity or self._over_bytes()):
                old_key, (old_value, _) = self._entries.popitem(last=False)
                self._on_evict(old_key, old_value)

    def pop(self, key: str) -> T | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            return None if entry is None else entry[0]

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._entries.values())

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def _over_bytes(self) -> bool:
        return self.max_bytes is not None and self.total_bytes > self.max_bytes
