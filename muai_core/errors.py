"""The muai error hierarchy: every error a user sees says what went wrong and what to do next."""

from __future__ import annotations


class BackendError(Exception):
    """Base of every muai error.

    ``hint`` is the next step for the user; it is appended to the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.reason = message
        self.hint = hint
        super().__init__(f"{message.rstrip('.')}. {hint}" if hint else message)


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
