"""Progress of long work (``muai pull``, ``export``, ``bench``) on stderr, in one style.

Steps are plain lines (``muai pull: [1/2] reading ...``) that read the same in a terminal and in a log.
A loop of known length gets a tqdm bar, the library transformers draws its own bars with, where tqdm is
installed and stderr is a terminal; otherwise each item is a plain line. The core does not need tqdm.
Commands whose long loops run inside transformers turn its bars on or off to match ``Progress.bars``.
The command's result (a path) is not progress: the command prints it once, on stdout.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """The progress lines of one command, e.g. ``Progress("muai export", steps=5)``."""

    def __init__(self, command: str, steps: int = 0, stream: TextIO | None = None) -> None:
        self.command = command
        self.steps = steps
        self.done = 0
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr  # looked up late, so a redirected stderr is honoured

    @property
    def bars(self) -> bool:
        """Whether loops get a bar: tqdm is installed and stderr is a terminal (not a log)."""
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty()) and find_spec("tqdm") is not None

    def say(self, message: str) -> None:
        print(f"{self.command}: {message}", file=self.stream, flush=True)

    def step(self, message: str) -> None:
        """The next numbered step: ``[done/steps] message``."""
        self.done += 1
        self.say(f"[{self.done}/{self.steps}] {message}" if self.steps else message)

    def bar(self, total: int, what: str) -> Bar:
        """A bar over ``total`` items of ``what``; use as a context manager and call ``advance`` per item."""
        return Bar(self, total, what)


class Bar:
    """A tqdm bar on a terminal, else one plain line per item."""

    def __init__(self, progress: Progress, total: int, what: str) -> None:
        self.progress = progress
        self.total = total
        self.what = what
        self.count = 0
        self._tqdm = _tqdm(progress.stream, total, what) if progress.bars else None

    def say(self, message: str) -> None:
        """A line that leaves the bar intact."""
        if self._tqdm is None:
            self.progress.say(message)
        else:
            self._tqdm.write(f"{self.progress.command}: {message}", file=self.progress.stream)

    def advance(self, note: str = "") -> None:
        self.count += 1
        if self._tqdm is None:
            self.progress.say(f"  {self.what} {self.count}/{self.total}" + (f": {note}" if note else ""))
            return
        if note:
            self._tqdm.set_postfix_str(note, refresh=False)
        self._tqdm.update(1)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def _tqdm(stream: TextIO, total: int, what: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"  {what}", file=stream, unit="", leave=True, dynamic_ncols=True)
