"""Running test work in several threads at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def in_threads(count: int, work: Callable[[int], Any], *, timeout_s: float, stagger_s: float = 0.0) -> list[Any]:
    """``work(i)`` for i in 0..count-1, each in a thread of its own started ``stagger_s`` after the last.

    Returns each result, or the exception it raised, in order; fails the test if a thread is still running
    ``timeout_s`` after the others were waited for (a hang).
    """
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            results[index] = work(index)
        except Exception as exc:  # handed to the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(stagger_s)
    for thread in threads:
        thread.join(timeout_s)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results
