"""Writing a directory all at once: build it beside its target, swap it into place when complete.

``target_lock`` holds an exclusive lock per target (a second writer waits for the first) and, once held,
tidies what a killed writer left: staging folders are removed, and an export moved aside by a swap that
was cut short is put back. Inside it, ``staged_directory`` yields a fresh, uniquely named staging folder
and swaps it in by renames: the old folder is moved aside, the new one moved in, then the old one deleted
(unlinking, never overwriting, so a process that has its files mapped keeps reading them). Only folders
this module created, or a target that holds the writer's ``marker`` file, are ever removed.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from muai_core.errors import ConfigurationError

WRITABLE_HINT = "choose a folder you can write to"


@contextmanager
def target_lock(
    target: Path, *, on_wait: Callable[[], None] | None = None, hint: str = WRITABLE_HINT
) -> Iterator[None]:
    """Hold the lock ``.{name}.lock`` beside ``target``; if another process holds it, call ``on_wait`` and wait."""
    lock = _sibling(target, "lock")
    descriptor = _acquire(lock, on_wait, hint)
    try:
        _tidy(target)
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held: a waiter then finds its file gone and opens a new one
        os.close(descriptor)


@contextmanager
def staged_directory(target: Path, marker: str, *, hint: str = WRITABLE_HINT) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``, to be filled; call it under ``target_lock(target)``.

    When the block succeeds the folder replaces ``target``; when it fails (or is interrupted) the folder is
    removed and ``target`` is left as it was. An existing ``target`` is replaced only if it is an empty folder
    or a folder holding ``marker``; anything else is refused with a ``ConfigurationError`` before the block runs.
    """
    _check_replaceable(target, marker)
    staging = _fresh(target, "partial", hint)
    try:
        yield staging
        _check_replaceable(target, marker)
        _swap(staging, target, hint)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _sibling(target: Path, kind: str, suffix: str = "") -> Path:
    return target.parent / f".{target.name}.{kind}{suffix}"


def _acquire(lock: Path, on_wait: Callable[[], None] | None, hint: str) -> int:
    """An open descriptor of ``lock`` with an exclusive ``flock`` on it, the file still being at ``lock``."""
    waited = False
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise _unwritable(lock.parent, exc, hint) from exc
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None and not waited:
                    on_wait()
                waited = True
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            if os.fstat(descriptor).st_ino == os.stat(lock).st_ino:
                return descriptor
        except FileNotFoundError:
            pass  # the holder removed the file as it let go: lock a new one
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)


def _tidy(target: Path) -> None:
    """Remove the staging and trash folders of killed writers; put back a target moved aside by a cut-short swap.

    Only names this module makes for ``target`` match (``.{name}.{kind}-`` and 8 hex digits, or the plain
    ``.{name}.partial`` of muai before), never those of another target whose name merely starts alike.
    """
    name = re.escape(target.name)
    leftover = re.compile(rf"\.{name}\.(?:(partial|old|trash)-[0-9a-f]{{8}}|partial)")
    for path in sorted(target.parent.iterdir()):
        match = leftover.fullmatch(path.name)
        if match is None or path.is_symlink():
            continue
        if match.group(1) == "old" and not os.path.lexists(target):
            path.rename(target)  # a swap cut short between its renames: the old one is complete
        else:
            shutil.rmtree(path, ignore_errors=True)


def _check_replaceable(target: Path, marker: str) -> None:
    if not os.path.lexists(target):
        return
    if target.is_dir() and not target.is_symlink() and ((target / marker).is_file() or not any(target.iterdir())):
        return
    raise ConfigurationError(
        f"{target} exists and was not written by muai (no {marker} in it), so muai will not replace it",
        hint="move it away, or write to another name or folder",
    )


def _fresh(target: Path, kind: str, hint: str) -> Path:
    """A new, uniquely named folder ``.{name}.{kind}-XXXXXXXX`` beside ``target``."""
    while True:
        path = _sibling(target, kind, f"-{secrets.token_hex(4)}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise _unwritable(target.parent, exc, hint) from exc
        return path


def _unwritable(folder: Path, exc: OSError, hint: str) -> ConfigurationError:
    not_a_folder = isinstance(exc, (FileExistsError, NotADirectoryError))
    return ConfigurationError(
        f"cannot write in {folder}: {'not a folder' if not_a_folder else exc.strerror}", hint=hint
    )


def _swap(staging: Path, target: Path, hint: str) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and deleted last."""
    aside = None
    try:
        if os.path.lexists(target):
            aside = _sibling(target, "old", f"-{secrets.token_hex(4)}")
            target.rename(aside)
        try:
            staging.rename(target)
        except BaseException:
            if aside is not None:
                aside.rename(target)
            raise
    except OSError as exc:
        raise ConfigurationError(f"cannot move {staging.name} to {target}: {exc.strerror or exc}", hint=hint) from exc
    if aside is not None:  # renamed first, so a delete cut short is never taken for a complete old target
        trash = _sibling(target, "trash", f"-{secrets.token_hex(4)}")
        aside.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
