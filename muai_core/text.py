"""Prompt and text handling shared by backends that use Hugging Face tokenizers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from muai_core import chat_template
from muai_core.contracts import GenerationRequest, Streamer


class TextStream:
    """Feeds a ``Streamer`` the text that each new token adds; remembers whether it asked to stop.

    Text that ends in an incomplete UTF-8 sequence (decoded as U+FFFD) is held back until whole, or until
    ``finish()`` sends what is left, so the pieces always add up to the completion. ``resume_ids`` (of a
    resumed generation, see ``GenerationRequest``) start the completion: their text goes out with the first
    new token's.
    """

    def __init__(
        self, decode: Callable[[Sequence[int]], str], streamer: Streamer | None, resume_ids: Sequence[int] = ()
    ) -> None:
        self._decode = decode
        self._streamer = streamer
        self._ids: list[int] = list(resume_ids)
        self._sent = 0
        self.stopped = False

    @property
    def token_ids(self) -> tuple[int, ...]:
        """The completion's token ids so far (``resume_ids`` included)."""
        return tuple(self._ids)

    def push(self, token_id: int) -> None:
        self._ids.append(token_id)
        if self._streamer is None:
            return
        text = self._decode(self._ids)
        if not text.endswith("\ufffd"):
            self._send(text)

    def finish(self) -> None:
        """Send any held-back text; call once generation has ended."""
        if self._streamer is not None and not self.stopped:
            self._send(self._decode(self._ids))

    def _send(self, text: str) -> None:
        piece, self._sent = text[self._sent :], len(text)
        if piece and self._streamer(piece) is False:
            self.stopped = True


def prompt_text(tokenizer: Any, request: GenerationRequest) -> str:
    """The text to tokenise for a transformers ``tokenizer``: see ``muai_core.chat_template.prompt_text``."""
    return chat_template.prompt_text(request, getattr(tokenizer, "chat_template", None), tokenizer.special_tokens_map)


def vocab_digest(vocab: Mapping[str, int]) -> str:
    """A digest of a vocabulary (token -> id), for ``tokenizer_digest`` in a backend's model info.

    Two backends whose tokenizers give it the same digest read each other's token ids the same way.
    """
    items = "\n".join(f"{token_id}\t{token}" for token, token_id in sorted(vocab.items(), key=lambda item: item[1]))
    return "vocab-sha256:" + hashlib.sha256(items.encode("utf-8", "surrogatepass")).hexdigest()
