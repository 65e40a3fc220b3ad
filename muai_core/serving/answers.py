"""The OpenAI response bodies: whole answers, streamed chunks (server-sent events) and their muai extras."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from muai_core.contracts import GenerationResult

#: muai's finish reasons as OpenAI's.
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "stopped": "stop"}
DONE = b"data: [DONE]\n\n"


class Answer:
    """The bodies of one answer to ``kind`` (``chat`` or ``completion``) from ``model``."""

    def __init__(self, kind: str, model: str) -> None:
        self.kind, self.model = kind, model
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def whole(self, result: GenerationResult, precision: str | None) -> dict[str, Any]:
        """The complete, non-streamed answer."""
        reason = FINISH_REASONS[result.finish_reason]
        if self.kind == "chat":
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": result.completion},
                "finish_reason": reason,
            }
        else:
            choice = {"index": 0, "text": result.completion, "logprobs": None, "finish_reason": reason}
        return {**self._head(""), "choices": [choice], **self.extras(result, precision)}

    def chunk(self, piece: str, first: bool = False) -> bytes:
        """One streamed piece of text as an SSE event."""
        return event({**self._head(".chunk"), "choices": [self._delta(piece, None, first)]})

    def last_chunk(self, result: GenerationResult, precision: str | None) -> bytes:
        """The final chunk: finish reason, usage and muai's figures (then ``DONE``)."""
        choice = self._delta("", FINISH_REASONS[result.finish_reason], False)
        return event({**self._head(".chunk"), "choices": [choice], **self.extras(result, precision)})

    def extras(self, result: GenerationResult, precision: str | None) -> dict[str, Any]:
        """``usage`` and ``muai``: the backend that answered, its precision, TTFT, speed and muai's finish reason."""
        speed = result.new_tokens / result.total_s if result.total_s > 0 else 0.0
        return {
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.new_tokens,
                "total_tokens": result.prompt_tokens + result.new_tokens,
            },
            "muai": {
                "backend": result.backend,
                "precision": precision,
                "ttft_s": round(result.ttft_s, 6),
                "tokens_per_s": round(speed, 3),
                "queue_wait_s": round(result.queue_wait_s, 6),
                "finish_reason": result.finish_reason,
            },
        }

    def _head(self, suffix: str) -> dict[str, Any]:
        kind = "chat.completion" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": kind + suffix, "created": self.created, "model": self.model}

    def _delta(self, piece: str, reason: str | None, first: bool) -> dict[str, Any]:
        if self.kind != "chat":
            return {"index": 0, "text": piece, "logprobs": None, "finish_reason": reason}
        delta = {"role": "assistant", "content": piece} if first else ({"content": piece} if piece else {})
        return {"index": 0, "delta": delta, "finish_reason": reason}


def event(data: dict[str, Any]) -> bytes:
    """``data`` as one server-sent event."""
    return b"data: " + json.dumps(data, ensure_ascii=False).encode("utf-8") + b"\n\n"
