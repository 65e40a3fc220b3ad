"""Choosing the next token from logits: a repetition penalty, then greedy or sampling with temperature, top-k, top-p."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest


def next_token(logits: Any, request: GenerationRequest, rng: np.random.Generator, banned: Sequence[int] = ()) -> int:
    """Same order as transformers: temperature, then top-k, then top-p, then a draw; ``banned`` ids never come out."""
    if not request.do_sample:
        token = int(np.argmax(logits))
        if token not in banned:
            return token  # the common case copies nothing
        scores = np.array(logits)
        scores[list(banned)] = -np.inf
        return int(np.argmax(scores))
    probs = distribution(logits, request, banned)
    return int(rng.choice(probs.size, p=probs))


def distribution(logits: Any, request: GenerationRequest, banned: Sequence[int] = ()) -> np.ndarray:
    """The probabilities ``next_token`` draws from when sampling (float64, summing to 1)."""
    scores = logits.astype(np.float64) / request.temperature
    scores[list(banned)] = -np.inf
    if request.top_k and request.top_k < scores.size:
        kth = np.partition(scores, -request.top_k)[-request.top_k]
        scores[scores < kth] = -np.inf
    if request.top_p < 1.0:
        order = np.argsort(-scores)
        probs = _softmax(scores[order])
        outside = np.cumsum(probs) - probs >= request.top_p  # the first token is always kept
        scores[order[outside]] = -np.inf
    return _softmax(scores)


class Penalty:
    """transformers' repetition penalty: the logits of tokens already seen (prompt and output) are divided by
    ``penalty`` where positive and multiplied by it where negative. Calling it returns a changed copy."""

    def __init__(self, prompt_ids: Sequence[int], penalty: float) -> None:
        self._penalty = penalty
        self._seen = set(prompt_ids)
        self._ids = np.fromiter(self._seen, dtype=np.int64)

    def saw(self, token: int) -> None:
        if token not in self._seen:
            self._seen.add(token)
            self._ids = np.append(self._ids, token)

    def __call__(self, logits: Any) -> Any:
        scores = np.array(logits)
        seen = scores[self._ids]
        scores[self._ids] = np.where(seen < 0, seen * self._penalty, seen / self._penalty)
        return scores


def _softmax(scores: Any) -> Any:
    shifted = np.exp(scores - np.max(scores))
    return shifted / shifted.sum()
