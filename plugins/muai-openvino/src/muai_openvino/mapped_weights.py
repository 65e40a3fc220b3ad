"""Weights OpenVINO has mapped from the export's file: release this process's hold on their pages."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

#: madvise(2) advice: drop this process's mappings of the pages; a file's pages stay in the page cache.
MADV_DONTNEED = 4
#: How often ``released_while`` releases the pages (the weights read in that time are what it lets count).
RELEASE_PERIOD_S = 0.005


def release_mapped_pages(path: Path) -> None:
    """Unmap the pages of ``path`` from this process, leaving them in the page cache.

    OpenVINO maps the weights file and the CPU plugin keeps repacked copies of most matrices, so once they
    are made both count in the process. Only read-only mappings are advised: their pages are the file's own,
    so a later read sees the same bytes, and the ones the runtime still reads in place (on CPU the embedding
    rows a prompt uses, at FP32 also one MLP matrix a layer) come back from the page cache without I/O.
    MADV_PAGEOUT would evict them instead, and the first token would wait on the disk.
    """
    if not sys.platform.startswith("linux"):
        return
    target = os.path.realpath(path)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == target and "w" not in fields[1]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if libc.madvise(start, end - start, MADV_DONTNEED) != 0:
                    log.debug("madvise(MADV_DONTNEED) failed for %s: errno %d", target, ctypes.get_errno())


@contextmanager
def released_while(path: Path, period_s: float = RELEASE_PERIOD_S) -> Iterator[None]:
    """Release the mapped pages of ``path`` every ``period_s`` while the block runs, and once when it ends.

    The CPU plugin repacks the weights it reads from the mapped file (at FP32 while compiling, compressed
    weights on the first inference): released as it goes, the file's pages and the copies made of them do not
    both count in the process's peak. The file must stay mapped until the block ends (hold the model that
    maps it): a range unmapped and mapped again for other memory between reading ``/proc/self/maps`` and
    ``madvise`` would lose its contents.
    """
    stop = threading.Event()

    def release() -> None:
        while not stop.wait(period_s):
            release_mapped_pages(path)

    thread = threading.Thread(target=release, name="muai-release-pages", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        release_mapped_pages(path)
