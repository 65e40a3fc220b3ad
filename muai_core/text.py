"""Prompt and text handling shared by backends that use Hugging Face tokenizers."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from muai_core import chat_template
from muai_core.contracts import GenerationRequest, Streamer


class TextStream:
    """Feeds a ``Streamer`` the text that each new token adds, and watches for stop strings.

    Text that ends in an incomplete UTF-8 sequence (decoded as U+FFFD) is held back until whole, or until
    ``finish()`` sends what is left, so the pieces always add up to the completion. A trailing space waits for the
    next token too: tokenizers that clean up spaces (" ." -> ".") rewrite it once that comes. With ``stop`` strings,
    the generated text is searched (only where a new match can be) after each token: at the earliest match
    the text is cut there and ``stopped_by_string`` is set, and a tail that could be the start of a stop
    string is held back until it is not, so no piece ever shows part of a stop string.
    ``stopped`` says the streamer asked to stop. ``resume_ids`` (of a resumed generation, see
    ``GenerationRequest``) start the completion: their text goes out with the first new token's. Once
    ``cancel`` is set, the next token stops generation (``stopped``) whether or not it brings text.
    """

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        streamer: Streamer | None,
        stop: Sequence[str] = (),
        resume_ids: Sequence[int] = (),
        cancel: threading.Event | None = None,
    ) -> None:
        self._decode = decode
        self._streamer = streamer
        self._cancel = cancel
        self._stops = tuple(stop)
        self._longest = max(map(len, self._stops), default=0)
        self._ids: list[int] = list(resume_ids)
        self._sent = 0
        self._searched = 0  # text before this index holds no stop string (nor the start of one that ends later)
        self._decoded = ""
        self.stopped = False
        self.stopped_by_string = False
        self.cut: int | None = None  # where the matched stop string starts in the decoded completion

    @property
    def token_ids(self) -> tuple[int, ...]:
        """The completion's token ids so far (``resume_ids`` included)."""
        return tuple(self._ids)

    @property
    def ended(self) -> bool:
        """Whether generation should end: the streamer asked to, or a stop string matched."""
        return self.stopped or self.stopped_by_string

    def push(self, token_id: int) -> None:
        self._ids.append(token_id)
        if self._cancel is not None and self._cancel.is_set():
            self.stopped = True  # checked on every token: held-back text must not keep a cancelled run going
        if self._streamer is None and not self._stops:
            return
        text = self._decode(self._ids)
        release = self._sent if text.endswith("\ufffd") else len(text)
        if text.endswith(" "):  # a later token may still fold it (" ." -> "."); one space only, so a run goes out
            release = min(release, len(text) - 1)
        if self._stops:
            self._decoded = text
            self.cut = self._find_stop(text)
            if self.cut is not None:
                self.stopped_by_string = True
                release = self.cut
            else:
                release = min(release, len(text) - self._ambiguous_tail(text))
        if self._streamer is not None and not self.stopped:
            self._send(text[:release])

    def finish(self) -> None:
        """Send any held-back text; call once generation has ended."""
        if self._streamer is not None and not self.ended:
            self._send(self._decode(self._ids))

    def trim(self, text: str) -> str:
        """``text`` (which ends with the decoded completion) without the stop string that matched and what follows."""
        if self.cut is None:
            return text
        return text[: len(text) - (len(self._decoded) - self.cut)]

    def _find_stop(self, text: str) -> int | None:
        start = max(0, self._searched - self._longest + 1)
        # an incomplete character may still change, and a trailing space may still fold (" ." -> ".")
        whole = text.rstrip("\ufffd")
        self._searched = len(whole) - 1 if whole.endswith(" ") else len(whole)
        found = [i for i in (text.find(s, start) for s in self._stops) if i >= 0]
        return min(found) if found else None

    def _ambiguous_tail(self, text: str) -> int:
        """The length of the longest end of ``text`` that is the start of a stop string."""
        tail = 0
        for stop in self._stops:
            start = max(0, len(text) - len(stop) + 1)
            while (start := text.find(stop[0], start)) >= 0:
                if stop.startswith(text[start:]):
                    tail = max(tail, len(text) - start)
                    break
                start += 1
        return tail

    def _send(self, text: str) -> None:
        piece = text[self._sent :]
        if piece:
            self._sent = len(text)
            if self._streamer(piece) is False:
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
