"""Speculative decoding: guess the next tokens cheaply, check all the guesses in one forward pass.

The guesses (candidates) come from a proposer: ``PromptLookup`` (the tokens that followed the latest earlier
occurrence of the last few tokens, an n-gram of the prompt or of the text so far) or a draft model
(``muai_core.drafting.DraftModel``). The step is fed the last token and the candidates at once and returns the
logits after each; a token is chosen from each row in turn exactly as plain decoding would choose it, and the
first choice that differs from its candidate ends the round (its own row came after accepted tokens only, so
it stands). The rejected candidates are rolled back (``step.truncate``).

Greedy decoding therefore gives the very tokens of plain decoding. Sampling keeps the output distribution
with the standard rejection rule: a candidate ``c`` drawn from the proposer's distribution ``q`` is accepted
with probability ``min(1, p(c) / q(c))``; else the token is drawn from ``max(0, p - q)``, renormalised; after
every candidate is accepted, one more comes from ``p``. Prompt lookup proposes one token for sure (``q`` is
one-hot): ``c`` is accepted with probability ``p(c)``, else drawn from ``p`` without ``c``.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from muai_core.batching import Cancelled
from muai_core.contracts import GenerationRequest
from muai_core.drafting import DRAFT_TOKENS, DraftProposer
from muai_core.errors import InferenceError
from muai_core.sampling import Penalty, distribution, next_token

#: The longest and shortest n-grams looked up, longest first.
MAX_NGRAM = 3
MIN_NGRAM = 2
#: The most steps without proposals where proposing does not pay.
MAX_PAUSE = 16
#: How much the acceptance rate remembers of each earlier round.
DECAY = 0.8


@dataclass
class SpeculationStats:
    """What a speculative generation did: verify calls, candidates proposed and accepted."""

    verify_calls: int = 0
    proposed: int = 0
    accepted: int = 0


def can_verify(step: Any) -> bool:
    """Whether ``step`` has ``verify`` and ``truncate`` (a ``muai_core.batching.BatchedSequence`` whose engine can)."""
    return bool(getattr(step, "can_verify", False))


class Proposer(Protocol):
    """Where candidates come from: told each chosen token (``append``), asked for up to ``count`` more
    (``propose``). ``distributions``: the distribution each candidate of the last proposal was drawn from
    (sampling a draft model); where it has none for a candidate, that one was proposed for sure."""

    distributions: Sequence[np.ndarray]

    def append(self, token: int) -> None: ...

    def propose(self, count: int) -> list[int]: ...


class PromptLookup:
    """Candidates from n-grams of the history: where the last n tokens occurred before, what followed them."""

    distributions: Sequence[np.ndarray] = ()

    def __init__(self, history: list[int]) -> None:
        self.history: list[int] = []
        self._after: dict[tuple[int, ...], int] = {}  # n-gram -> index of the token after its latest occurrence
        for token in history:
            self.append(token)

    def append(self, token: int) -> None:
        history = self.history
        end = len(history)  # the n-grams ending before ``token`` now have a continuation
        for n in range(MIN_NGRAM, MAX_NGRAM + 1):
            if end >= n:
                self._after[tuple(history[end - n : end])] = end
        history.append(token)

    def propose(self, count: int) -> list[int]:
        """``count`` tokens that followed the latest earlier occurrence of the longest n-gram that ends now (none
        if it never occurred); where they run past the end, the text repeats itself from that occurrence on."""
        history = self.history
        for n in range(MAX_NGRAM, MIN_NGRAM - 1, -1):
            start = self._after.get(tuple(history[-n:])) if len(history) >= n else None
            if start is not None:
                proposed = history[start : start + count]
                while len(proposed) < count:  # a loop: the candidates continue it
                    proposed.append(proposed[len(proposed) - (len(history) - start)])
                return proposed
        return []


class _Draft:
    """How many candidates to propose: the number that makes the most tokens per second, from the acceptance
    rate so far (a decaying average per candidate) and the measured costs: a step of ``1 + k`` tokens costs
    ``plain + k * extra`` seconds, and proposing ``k`` candidates ``k * propose`` (a draft model's steps). Free
    candidates (``free``: prompt lookup) take every place allowed wherever that pays too: acceptance comes in
    runs (a copied passage) that a per-candidate rate underrates, and a step whose width differs from the last
    one's costs more than a few more positions (OpenVINO's CPU plugin plans the graph again for a new input
    shape), so a steady verify width is cheaper than the "best" one. Where no number pays, none are proposed
    for a pause that doubles while it keeps not paying (up to ``MAX_PAUSE`` steps); then one round probes
    again."""

    def __init__(self, most: int, free: bool = False) -> None:
        self.most = most
        self.free = free
        self._hits, self._tries = 1.0, 2.0  # candidates accepted / checked, decaying: a rate of 1/2 to start
        self._plain: float | None = None  # seconds of a one-token step
        self._extra = 0.0  # seconds each more token adds to a step
        self._propose = 0.0  # seconds proposing one candidate takes
        self._pause = 0  # steps of the last pause (doubled by the next one, reset by a round that paid)
        self._paused = 0  # steps left without proposals now
        self._probing = False  # a pause has ended: propose once whatever the estimates say

    def wanted(self, left: int) -> int:
        if self._paused:
            self._paused -= 1
            return 0
        most = min(self.most, left - 1)
        if most < 1:
            return 0
        rate = min(self._hits / self._tries, 0.99)
        plain = self._plain or 1.0
        cost = self._extra + self._propose
        gains = [(1 - rate ** (k + 1)) / (1 - rate) / (plain + k * cost) for k in range(1, most + 1)]
        best = most if self.free and gains[-1] * plain > 1.0 else max(range(most), key=gains.__getitem__) + 1
        if gains[best - 1] * plain > 1.0 or self._probing:
            self._probing = False
            return best
        self._pause = min(MAX_PAUSE, 2 * self._pause or 1)
        self._paused, self._probing = self._pause - 1, True
        return 0

    def update(self, proposed: int, accepted: int) -> None:
        self._hits = DECAY * self._hits + accepted
        self._tries = DECAY * self._tries + accepted + (accepted < proposed)
        plain = self._plain or 0.0
        if accepted and accepted * plain >= proposed * (self._extra + self._propose):  # the round paid its way
            self._pause = 0

    def timed(self, width: int, seconds: float) -> None:
        if width == 1:
            self._plain = seconds if self._plain is None else 0.8 * self._plain + 0.2 * seconds
        elif self._plain is None:  # every step so far was wide (a draft proposes each round): an upper bound
            self._plain = seconds
        else:
            extra = max(0.0, (seconds - self._plain) / (width - 1))
            self._extra = 0.8 * self._extra + 0.2 * extra if self._extra else extra

    def proposed(self, count: int, seconds: float) -> None:
        each = seconds / count
        self._propose = 0.8 * self._propose + 0.2 * each if self._propose else each


def speculative_tokens(
    step: Any,
    ids: list[int],
    prompt_length: int,
    request: GenerationRequest,
    eos_ids: Collection[int],
    budget: int,
    stats: SpeculationStats,
    draft_step: Any = None,
) -> Iterator[int]:
    """``decode_loop``'s tokens with speculation: the tokens plain decoding gives (greedy) or their
    distribution (sampling), after ``ids``, at most ``budget`` of them (the step never holds more positions).

    The candidates come from ``draft_step`` (a step on ``request.drafter``'s model, up to ``request.draft_tokens``
    a round) where given, else from prompt lookup (up to ``request.prompt_lookup``).
    """
    rng = np.random.default_rng(request.seed)
    banned = sorted(eos_ids) if request.ignore_eos else []
    held = sorted({*banned, *eos_ids, *request.stop_token_ids})
    penalty = Penalty(ids, request.repetition_penalty) if request.repetition_penalty != 1.0 else None
    first = len(ids) - prompt_length
    index = first
    candidates: list[int] = []
    try:
        rows = step(np.asarray([ids], dtype=np.int64))[None]
    except Cancelled:
        return
    request.check_token_ids(rows.shape[-1])
    source: Proposer
    if draft_step is None:
        source, draft = PromptLookup(ids), _Draft(request.prompt_lookup or 0, free=True)
    else:
        banned_at = lambda position: held if position - prompt_length < request.min_new_tokens else banned  # noqa: E731
        source = DraftProposer(draft_step, ids, request, rng, banned_at, rows.shape[-1])
        draft = _Draft(request.draft_tokens or DRAFT_TOKENS)
    while True:
        if not np.isfinite(rows).all():
            raise InferenceError(f"the model produced non-finite logits at step {index - first}")
        accepted = 0
        drawn = source.distributions
        for row in rows:
            logits = penalty(row) if penalty is not None else row
            banned_now = held if index < request.min_new_tokens else banned
            candidate = candidates[accepted] if accepted < len(candidates) else None
            q = drawn[accepted] if accepted < len(drawn) else None
            token = _choose(logits, request, rng, banned_now, candidate, q)
            if penalty is not None:
                penalty.saw(token)
            source.append(token)
            index += 1
            hit = token == candidate
            if hit:  # counted before the yield: generation may end there
                accepted += 1
                stats.accepted += 1
            yield token
            if not hit:
                break
        if candidates:
            draft.update(len(candidates), accepted)
            if accepted < len(candidates):
                step.truncate(step.length - (len(candidates) - accepted))
        wanted = draft.wanted(budget - (index - first))
        started = time.perf_counter()
        try:
            candidates = source.propose(wanted) if wanted > 0 else []
        except Cancelled:
            return
        if candidates:
            draft.proposed(len(candidates), time.perf_counter() - started)
        feed = np.asarray([[token, *candidates]], dtype=np.int64)
        started = time.perf_counter()
        try:
            rows = step.verify(feed) if candidates else step(feed)[None]
        except Cancelled:
            return
        draft.timed(feed.shape[1], time.perf_counter() - started)
        if candidates:
            stats.verify_calls += 1
            stats.proposed += len(candidates)


def _choose(
    logits: Any,
    request: GenerationRequest,
    rng: np.random.Generator,
    banned: list[int],
    candidate: int | None,
    q: np.ndarray | None = None,
) -> int:
    """The token plain decoding picks from ``logits``; sampling accepts ``candidate``, drawn from ``q`` (None:
    proposed for sure), with probability ``min(1, p / q)``, else draws from ``max(0, p - q)`` renormalised."""
    if not request.do_sample or candidate is None:
        return next_token(logits, request, rng, banned)
    probs = distribution(logits, request, banned)
    if q is None:
        q = np.zeros_like(probs)
        q[candidate] = 1.0
    if rng.random() * q[candidate] < probs[candidate]:
        return candidate
    rest = np.maximum(probs - q, 0.0)
    total = rest.sum()
    return int(rng.choice(rest.size, p=rest / total)) if total > 0 else next_token(logits, request, rng, banned)
