"""Draft-model speculative decoding: a smaller model with the target's tokenizer proposes the candidates.

The manager loads the draft (``models.<name>.draft`` or the ``draft`` generation argument) like any model, on
whichever backend its chain gives, and hands ``decode_loop`` a ``DraftModel`` (``GenerationRequest.drafter``).
``decode_loop`` opens a decode step on it for the generation (the draft backend's ``muai_decode_step`` hook),
and ``DraftProposer`` drives that step for ``muai_core.speculative.speculative_tokens``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from muai_core.batching import Cancelled
from muai_core.contracts import GenerationRequest
from muai_core.errors import InvalidInputError, first_line
from muai_core.sampling import distribution, next_token

#: The most candidates a draft model proposes a round unless ``draft_tokens`` says otherwise.
DRAFT_TOKENS = 8


@dataclass(frozen=True)
class DraftModel:
    """A loaded draft model, for one generation (set by the manager as ``GenerationRequest.drafter``).

    ``open(longest, cancel)``: a context manager giving a decode step on the draft for a sequence of at most
    ``longest`` positions, or None where its backend gives none. ``unused(reason)``: told why the draft is not
    used (or no longer, after a failure); the target decodes on without it.
    """

    name: str
    open: Callable[[int, threading.Event | None], AbstractContextManager[Any] | None]
    unused: Callable[[str], None]


class DraftProposer:
    """Candidates from a draft model's decode step, which must roll back (``truncate``).

    The step holds the history (the prompt and every chosen token) up to where the draft's candidates and the
    chosen tokens parted, then the rest of its candidates; each round rolls it back to that point, feeds the
    chosen tokens it has not seen and proposes one candidate per step from the logits after the one before:
    greedy where the target decodes greedily, else drawn from the draft's own distribution (kept in
    ``distributions`` for the rejection rule). A failing draft step ends proposing for this generation (the
    reason goes to ``request.drafter.unused``); a draft whose vocabulary differs from the target's
    (``vocab`` logits per token) is refused.
    """

    def __init__(
        self,
        step: Any,
        history: list[int],
        request: GenerationRequest,
        rng: np.random.Generator,
        banned_at: Callable[[int], Sequence[int]],
        vocab: int,
    ) -> None:
        self.history = list(history)
        self.distributions: list[np.ndarray] = []
        self._step = step
        self._request, self._rng, self._banned_at, self._vocab = request, rng, banned_at, vocab
        self._fed: list[int] = []  # the tokens the step holds
        self._synced = 0  # how many of them are chosen tokens

    def append(self, token: int) -> None:
        self.history.append(token)

    def propose(self, count: int) -> list[int]:
        self.distributions = []
        if self._step is None or count < 1:
            return []
        try:
            return self._propose(count)
        except (Cancelled, InvalidInputError):
            raise
        except Exception as exc:
            self._step, self.distributions = None, []
            drafter = self._request.drafter
            if drafter is not None:
                drafter.unused(f"its decode step failed: {type(exc).__name__}: {first_line(exc)}")
            return []

    def _propose(self, count: int) -> list[int]:
        history, fed, step = self.history, self._fed, self._step
        keep = self._synced
        while keep < min(len(fed), len(history) - 1) and fed[keep] == history[keep]:
            keep += 1
        if keep < len(fed):
            step.truncate(keep)
            del fed[keep:]
        feed, proposed = history[keep:], []
        for _ in range(count):
            logits = step(np.asarray([feed], dtype=np.int64))
            fed.extend(feed)
            if not proposed:  # every chosen token is in now
                self._synced = len(history)
                self._check(logits)
            banned = self._banned_at(len(history) + len(proposed))
            if self._request.do_sample:
                q = distribution(logits, self._request, banned)
                token = int(self._rng.choice(q.size, p=q))
                self.distributions.append(q)
            else:
                token = next_token(logits, self._request, self._rng, banned)
            proposed.append(token)
            feed = [token]
        return proposed

    def _check(self, logits: Any) -> None:
        if logits.shape[-1] != self._vocab:
            drafter = self._request.drafter
            name = drafter.name if drafter is not None else "the draft model"
            raise InvalidInputError(
                f"draft model '{name}' gives {logits.shape[-1]} logits per token and the target {self._vocab}: "
                "their vocabularies differ, so the draft's token ids mean other tokens to the target",
                hint="pick a draft model with the target's tokenizer, or pass draft='' to decode without one",
            )
