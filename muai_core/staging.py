"""Writing a directory all at once: build it beside its target, rename it into place when complete."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty ``.{name}.partial`` folder beside ``target``.

    When the block succeeds the folder replaces ``target``; when it fails (or is interrupted) the
    folder is removed, so no half-written ``target`` is ever left behind.
    """
    staging = target.parent / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
