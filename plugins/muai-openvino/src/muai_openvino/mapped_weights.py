"""Weights OpenVINO has mapped from the export's file: release this process's hold on their pages.

Only the ranges a model read here mapped itself are released, and only while that model is held: a range
is never advised once it may have been unmapped and its addresses reused (``MADV_DONTNEED`` on other memory
would zero it). ``read_mapped`` tells a model's ranges apart from those of models other threads load and
unload meanwhile: every model of the plugin is read through it, one at a time.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: madvise(2) advice: drop this process's mappings of the pages; a file's pages stay in the page cache.
MADV_DONTNEED = 4
#: How often ``released_while`` releases the pages (the weights read in that time are what it lets count).
RELEASE_PERIOD_S = 0.005
_READING = threading.Lock()

Ranges = tuple[tuple[int, int], ...]


def read_mapped(core: Any, xml: Path, weights: Path, mmap: bool) -> tuple[Any, Ranges]:
    """``core.read_model(xml)``, and the read-only ranges of ``weights`` it mapped (none without ``mmap``)."""
    with _READING:
        before = file_ranges(weights) if mmap else set()
        model = core.read_model(xml, config={"ENABLE_MMAP": mmap})
        return model, tuple(sorted(file_ranges(weights) - before)) if mmap else ()


def release(ranges: Ranges) -> None:
    """Unmap the pages of ``ranges`` from this process, leaving them in the page cache.

    The caller holds the model that maps them. OpenVINO maps the weights file and the CPU plugin keeps
    repacked copies of most matrices, so once they are made both count in the process. Only read-only
    mappings are advised: their pages are the file's own, so a later read sees the same bytes, and the ones
    the runtime still reads in place (on CPU the embedding rows a prompt uses, at FP32 also one MLP matrix a
    layer) come back from the page cache without I/O. MADV_PAGEOUT would evict them instead, and the first
    token would wait on the disk.
    """
    if not ranges or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for start, end in ranges:
        if libc.madvise(start, end - start, MADV_DONTNEED) != 0:
            log.debug("madvise(MADV_DONTNEED) failed at %#x: errno %d", start, ctypes.get_errno())


@contextmanager
def released_while(ranges: Ranges, period_s: float = RELEASE_PERIOD_S) -> Iterator[None]:
    """Release the pages of ``ranges`` every ``period_s`` while the block runs, and once when it ends.

    The CPU plugin repacks the weights it reads from the mapped file (at FP32 while compiling, compressed
    weights on the first inference): released as it goes, the file's pages and the copies made of them do not
    both count in the process's peak. The caller holds the model that maps ``ranges`` until the block ends.
    """
    if not ranges:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(period_s):
            release(ranges)

    thread = threading.Thread(target=run, name="muai-release-pages", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        release(ranges)


def file_ranges(path: Path) -> set[tuple[int, int]]:
    """The read-only ranges of this process's mappings of ``path`` (none off Linux)."""
    if not sys.platform.startswith("linux"):
        return set()
    target, ranges = os.path.realpath(path), set()
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == target and "w" not in fields[1]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.add((start, end))
    return ranges
