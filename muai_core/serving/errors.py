"""Errors in OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``) with the right HTTP status."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from muai_core.errors import BackendError, InvalidInputError, ResourceExhausted

log = logging.getLogger("muai.serve")

#: Seconds a client is told to wait after a 429 (the queue was full).
RETRY_AFTER_S = 1
#: muai's request fields as the OpenAI API names them.
OPENAI_NAMES = {"max_new_tokens": "max_tokens", "max_length": "max_tokens", "min_new_tokens": "min_tokens"}
#: The fields an ``InvalidInputError``'s message may start with, and the parameter each belongs to.
_FIELD = re.compile(
    r"\b(max_new_tokens|max_length|min_new_tokens|temperature|top_p|top_k|seed|stop|repetition_penalty|messages?|"
    r"prompt)\b"
)


@dataclass
class ApiError(Exception):
    """An answer with an error: ``status``, OpenAI's ``type``, the ``param`` at fault and extra ``headers``."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param)


def from_exception(exc: BaseException) -> ApiError:
    """The answer to an error raised while serving: muai's errors by kind, anything else a logged, bare 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidInputError):
        return ApiError(400, _openai_words(str(exc)), param=_param(exc.message))
    if isinstance(exc, ResourceExhausted):
        return ApiError(
            429, str(exc), "rate_limit_error", code="queue_full", headers={"Retry-After": str(RETRY_AFTER_S)}
        )
    if isinstance(exc, BackendError):
        log.warning("muai serve: %s", exc)
        return ApiError(503, str(exc), "service_unavailable", code="backend_unavailable")
    log.error("muai serve: unexpected error", exc_info=exc)
    return ApiError(500, "internal server error (logged on the server)", "server_error")


def _param(message: str) -> str | None:
    match = _FIELD.search(message)
    if match is None:
        return None
    name = match.group(1)
    return "messages" if name.startswith("message") else OPENAI_NAMES.get(name, name)


def _openai_words(text: str) -> str:
    for ours, theirs in OPENAI_NAMES.items():
        text = text.replace(ours, theirs)
    return text
