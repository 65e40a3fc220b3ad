"""An LRU of loaded models that unloads through the owning backend on eviction."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LRUCache(Generic[T]):
    """Holds at most ``capacity`` entries; the least recently used is handed to ``on_evict``."""

    def __init__(self, capacity: int, on_evict: Callable[[str, T], None]) -> None:
        self.capacity = capacity
        self._on_evict = on_evict
        self._entries: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: str) -> T | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: T) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                old_key, old_value = self._entries.popitem(last=False)
                self._on_evict(old_key, old_value)

    def pop(self, key: str) -> T | None:
        with self._lock:
            return self._entries.pop(key, None)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
