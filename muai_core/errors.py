"""The muai error hierarchy: every error a user sees says what went wrong and what to do next."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Set to 1 to keep absolute paths in error messages (they are shortened by default).
FULL_PATHS_ENV = "MUAI_FULL_PATHS"
_ABSOLUTE_PATH = re.compile(r"(?<![\w~.:/-])/[^\s'\"`,;:()\[\]{}<>]+")


class BackendError(Exception):
    """Base of every muai error.

    ``hint`` is the next step for the user; it is appended to the message. Absolute paths outside the
    working directory are shortened to their last two parts (``$MUAI_FULL_PATHS=1`` keeps them).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.reason = redact_paths(message)
        self.hint = None if hint is None else redact_paths(hint)
        super().__init__(f"{self.reason.rstrip('.')}. {self.hint}" if self.hint else self.reason)


def redact_paths(text: str) -> str:
    """``text`` with paths under the working directory made relative and other absolute paths shortened."""
    if os.environ.get(FULL_PATHS_ENV, "") == "1":
        return text
    cwd = Path.cwd()

    def shorten(match: re.Match[str]) -> str:
        raw = match.group(0)
        path = Path(raw.rstrip("."))
        tail = raw[len(str(path)) :] if raw.startswith(str(path)) else ""
        if path.is_relative_to(cwd):
            return (str(path.relative_to(cwd)) or ".") + tail
        return "…/" + "/".join(path.parts[-2:]) + tail if len(path.parts) > 1 else raw

    return _ABSOLUTE_PATH.sub(shorten, text)


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


def first_line(exc: BaseException) -> str:
    """The first non-empty line of a library's error, for messages that add our own context."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(exc).__name__


class PluginError(BackendError):
    """A plugin broke the hook contract (wrong return type, missing hook)."""
