"""Incremental detokenisation shared by backends: emit each new piece of text once it is whole."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from muai_core.contracts import Streamer


class TextStream:
    """Feeds a ``Streamer`` the text that each new token adds; remembers whether it asked to stop.

    Text that ends in an incomplete UTF-8 sequence (decoded as U+FFFD) is held back until whole.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], streamer: Streamer | None) -> None:
        self._decode = decode
        self._streamer = streamer
        self._ids: list[int] = []
        self._sent = 0
        self.stopped = False

    def push(self, token_id: int) -> None:
        self._ids.append(token_id)
        if self._streamer is None:
            return
        text = self._decode(self._ids)
        if text.endswith("\ufffd"):
            return
        piece, self._sent = text[self._sent :], len(text)
        if piece and self._streamer(piece) is False:
            self.stopped = True
