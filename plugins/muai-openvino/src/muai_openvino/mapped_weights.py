"""Weights OpenVINO has mapped from the export's file: release this process's hold on their pages."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

#: madvise(2) advice: drop this process's mappings of the pages; a file's pages stay in the page cache.
MADV_DONTNEED = 4


def release_mapped_pages(path: Path) -> None:
    """Unmap the pages of ``path`` from this process, leaving them in the page cache.

    OpenVINO maps the weights file and the CPU plugin also keeps repacked copies of most matrices, so
    after compilation both count in the process. Only read-only mappings are advised: their pages are the
    file's own, so a later read sees the same bytes, and the ones the runtime still reads in place (on CPU
    at FP32 one MLP matrix a layer, at INT8 every compressed one) come back from the page cache without I/O.
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
