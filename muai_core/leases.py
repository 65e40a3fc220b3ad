"""Models in use: one evicted or unloaded while a request is running on it is released after that request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Leases(Generic[T]):
    """Counts the operations in flight on each item; ``retire`` releases now or when the last one ends."""

    def __init__(self, release: Callable[[T], None]) -> None:
        self._release = release
        self._counts: dict[int, int] = {}
        self._retired: dict[int, T] = {}
        self._lock = threading.Lock()

    def acquire(self, item: T) -> T:
        with self._lock:
            self._counts[id(item)] = self._counts.get(id(item), 0) + 1
        return item

    def release(self, item: T) -> None:
        with self._lock:
            left = self._counts[id(item)] - 1
            if left:
                self._counts[id(item)] = left
                return
            del self._counts[id(item)]
            retired = self._retired.pop(id(item), None)
        if retired is not None:
            self._release(retired)

    def retire(self, item: T) -> None:
        """Release ``item`` now, or as soon as no operation holds it."""
        with self._lock:
            if self._counts.get(id(item)):
                self._retired[id(item)] = item
                return
        self._release(item)
