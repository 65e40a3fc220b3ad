"""The muai error hierarchy: every error a user sees says what went wrong and what to do next."""

from __future__ import annotations

import os
import re
import reprlib
from pathlib import Path
from typing import Any

#: Set to 1 to keep absolute paths in error messages (they are shortened by default).
FULL_PATHS_ENV = "MUAI_FULL_PATHS"
_ABSOLUTE_PATH = re.compile(r"(?<![\w~.:/-])/[^\s'\"`,;:()\[\]{}<>]+")


class BackendError(Exception):
    """Base of every muai error.

    ``hint`` is the next step for the user; it is appended to the message. Absolute paths outside the
    working directory are shortened to their last two parts when the message is shown (``str``, ``reason``,
    ``hint``; ``$MUAI_FULL_PATHS=1`` keeps them); ``message`` and ``raw_hint`` keep the text as raised.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.raw_hint = hint

    @property
    def reason(self) -> str:
        return redact_paths(self.message)

    @property
    def hint(self) -> str | None:
        return None if self.raw_hint is None else redact_paths(self.raw_hint)

    def __str__(self) -> str:
        reason, hint = self.reason, self.hint
        return f"{reason.rstrip('.')}. {hint}" if hint else reason


def redact_paths(text: str) -> str:
    """``text`` with paths under the working directory made relative and other absolute paths shortened."""
    if os.environ.get(FULL_PATHS_ENV, "") == "1":
        return text
    try:
        cwd: Path | None = Path.cwd()
    except OSError:  # the working directory was removed: every absolute path is outside it
        cwd = None

    def shorten(match: re.Match[str]) -> str:
        raw = match.group(0)
        path = Path(raw.rstrip("."))
        tail = raw[len(str(path)) :] if raw.startswith(str(path)) else ""
        if cwd is not None and path.is_relative_to(cwd):
            return (str(path.relative_to(cwd)) or ".") + tail
        names = path.parts[1:]
        return "…/" + "/".join(names[-2:]) + tail if len(names) > 2 else raw

    return _ABSOLUTE_PATH.sub(shorten, text)


class _BoundedRepr(reprlib.Repr):
    """``reprlib`` with every container, string and number cut before it is formatted."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 4
        self.maxstring = self.maxother = self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:  # repr() of a huge int is slow, and refused past 4300 digits
            return f"<a number of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_BOUNDED = _BoundedRepr()


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, without ever formatting more than a bounded part of it."""
    text = _BOUNDED.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ConfigurationError(BackendError, ValueError):
    """A setting (argument, YAML key, environment variable) has a value muai cannot use."""


class BackendInitializationError(BackendError):
    """A backend is not installed, or its runtime cannot start on this machine."""


class ModelLoadError(BackendError):
    """A model could not be found or loaded."""


class InferenceError(BackendError):
    """A forward pass or a generation failed."""


class InvalidInputError(InferenceError, ValueError):
    """The prompt, inputs or generation parameters are not valid."""


class UnsupportedRequest(InferenceError):
    """A backend cannot serve this one call (a feature or a size it lacks), though it works for others.

    The call runs on the next backend of the chain that can serve it; the model stays on its backend.
    """


class ResourceExhausted(InferenceError):
    """The model is busy: its queue of waiting requests is full. Retry later (an HTTP server answers 429).

    Not a failure of the backend: the call is not retried on another backend.
    """


class PartialGeneration(InferenceError):
    """A generation failed after producing ``produced_ids`` (the new token ids so far, in order).

    Raised from the engine's error (its ``__cause__``), so that the next backend can resume from those
    tokens instead of starting again. ``muai_core.decoding.decode_loop`` and ``token_loop`` raise it for you.
    """

    def __init__(self, message: str, *, produced_ids: tuple[int, ...], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.produced_ids = tuple(produced_ids)


#: Lines that only say where in a library's C++ sources it failed (OpenVINO: "Exception from src/...cpp:84:").
_SOURCE_LOCATION = re.compile(r"^(Exception from|Check '.*' failed at) \S+:\d+:?$")


def first_line(exc: BaseException) -> str:
    """The first non-empty line of a library's error that is not just a source location, for our own messages."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not _SOURCE_LOCATION.match(line)] or lines
    return reasons[0] if reasons else type(exc).__name__


class PluginError(BackendError):
    """A plugin broke the hook contract (wrong return type, missing hook)."""
