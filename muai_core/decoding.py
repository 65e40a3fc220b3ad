"""Generation loops for backends: ``decode_loop`` for engines that return logits per step, ``token_loop`` for
engines that run their own generation loop and hand back token ids one by one."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from muai_core.batching import Cancelled
from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.errors import (
    BackendError,
    InferenceError,
    InvalidInputError,
    PartialGeneration,
    ResourceExhausted,
    UnsupportedRequest,
    first_line,
)
from muai_core.sampling import Penalty, next_token
from muai_core.speculative import SpeculationStats, can_verify, speculative_tokens
from muai_core.text import TextStream

log = logging.getLogger(__name__)

#: Feeds the given token ids (the prompt first, then one token at a time) and returns the logits of the last.
Step = Callable[[np.ndarray], Any]
#: Starts an engine's own generation after ``ids`` (the prompt, then any ``resume_ids``) for at most ``budget``
#: new tokens, and yields each new token id as it comes: ``engine(ids, budget)``.
TokenEngine = Callable[[list[int], int], Iterable[int]]


def decode_loop(
    step: Step,
    prompt_ids: Sequence[int],
    request: GenerationRequest,
    decode: Callable[[Sequence[int]], str],
    *,
    eos_ids: Collection[int] = (),
    context_length: int | None = None,
) -> GenerationResult:
    """Generate with ``step`` until the budget, an EOS or stop token, a stop string or the streamer says stop.

    Samples each token itself (``ignore_eos``, ``min_new_tokens`` and ``repetition_penalty`` included); the
    rest is ``token_loop``'s: a resumed request continues after its ``resume_ids``, and a failing step, or
    non-finite logits, raises ``PartialGeneration`` holding the tokens produced so far. With
    ``request.prompt_lookup`` or a draft model (``request.drafter``), and a step that can verify several tokens
    at once (``muai_core.speculative``), it proposes tokens from the prompt or the draft and checks them in one
    step: the same tokens, fewer steps.
    """

    stats = SpeculationStats()
    verifies = can_verify(step)
    drafter = request.drafter
    if drafter is not None and not verifies:
        drafter.unused("the target's decode step cannot check several tokens at once on this backend or path")

    def engine(ids: list[int], budget: int) -> Iterator[int]:
        if drafter is not None and verifies:
            return _drafted_tokens(step, ids, len(prompt_ids), request, eos_ids, budget, stats)
        if request.prompt_lookup and verifies:
            return speculative_tokens(step, ids, len(prompt_ids), request, eos_ids, budget, stats)
        return _sampled_tokens(step, ids, len(prompt_ids), request, eos_ids)

    result = token_loop(engine, prompt_ids, request, decode, eos_ids=eos_ids, context_length=context_length)
    if not stats.verify_calls:
        return result
    return replace(result, verify_calls=stats.verify_calls, draft_tokens=stats.proposed, accepted_tokens=stats.accepted)


def token_loop(
    engine: TokenEngine,
    prompt_ids: Sequence[int],
    request: GenerationRequest,
    decode: Callable[[Sequence[int]], str],
    *,
    eos_ids: Collection[int] = (),
    context_length: int | None = None,
) -> GenerationResult:
    """Run an engine that generates by itself (``engine(ids, budget)`` yields new token ids) as ``muai_generate``.

    The engine samples: it must honour ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``seed``,
    ``repetition_penalty``, ``ignore_eos`` and ``min_new_tokens`` (hold EOS and ``stop_token_ids`` back), and
    yield the EOS or stop token it ends on. This loop does the rest: the budget, ending on EOS (unless
    ``ignore_eos``) or a stop token once ``min_new_tokens`` are out, stop strings, streaming, timings, resuming
    after ``resume_ids`` and the result. It closes the engine's iterator when generation ends before the
    engine does. An engine error becomes ``PartialGeneration`` holding the tokens produced so far (so the
    resolver can fall back and resume); ``InvalidInputError``, ``UnsupportedRequest``, ``ResourceExhausted`` and
    ``PartialGeneration`` pass as raised. An iterator that ends early ends generation (``finish_reason``
    ``"length"`` unless it ended on an EOS or stop token).
    """
    if not prompt_ids:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    new_ids = list(request.resume_ids)
    budget = request.new_token_budget(len(prompt_ids), context_length) - len(new_ids)
    stream = TextStream(decode, request.streamer, request.stop, new_ids, request.cancel)
    eos = frozenset(eos_ids)
    enders = frozenset(request.stop_token_ids) | (frozenset() if request.ignore_eos else eos)
    stamps: list[float] = []
    finish = "length"
    started = time.perf_counter()
    tokens = _engine_call(lambda: iter(engine([*prompt_ids, *new_ids], budget)), new_ids)
    try:
        while len(stamps) < budget:
            token = _engine_call(lambda: next(tokens, None), new_ids)
            if token is None:
                finish = _reason(new_ids[-1], eos, request) if new_ids else "length"
                if request.cancel is not None and request.cancel.is_set():
                    finish = "stopped"
                break
            stamps.append(time.perf_counter())
            new_ids.append(int(token))
            stream.push(new_ids[-1])
            if stream.stopped_by_string:
                finish = "stop"
                break
            if new_ids[-1] in enders and len(new_ids) > request.min_new_tokens:
                finish = _reason(new_ids[-1], eos, request)
                break
            if stream.stopped:
                finish = "stopped"
                break
    finally:
        _close(tokens)
    stream.finish()
    completion = decode(new_ids)
    text = decode([*prompt_ids, *new_ids]) if request.keeps_prompt else completion
    return GenerationResult(
        text=stream.trim(text),
        completion=stream.trim(completion),
        prompt_tokens=len(prompt_ids),
        token_ids=tuple(new_ids),
        finish_reason=finish,
        ttft_s=stamps[0] - started if stamps else time.perf_counter() - started,
        token_latencies_s=tuple(b - a for a, b in zip(stamps, stamps[1:], strict=False)),
    )


def partial_generation(exc: Exception, produced: Sequence[int]) -> PartialGeneration:
    """The ``PartialGeneration`` to raise from an engine's ``exc`` after it produced the ``produced`` tokens.

    Raise it ``from exc``; its message and hint are those of ``exc``.
    """
    message = exc.message if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
    hint = exc.raw_hint if isinstance(exc, BackendError) else None
    return PartialGeneration(message, produced_ids=tuple(produced), hint=hint)


def _drafted_tokens(
    step: Step, ids: list[int], prompt_length: int, request: GenerationRequest, eos_ids: Collection[int], budget: int,
    stats: SpeculationStats,
) -> Iterator[int]:  # fmt: skip
    """The tokens of ``speculative_tokens`` with the draft's candidates; where the draft's backend gives no step
    that rolls back, those of prompt lookup (if asked for) or of plain decoding, the reason told to the draft."""
    drafter = request.drafter
    try:
        opened = drafter.open(len(ids) + budget, request.cancel)
    except Exception as exc:
        opened, reason = None, f"opening its decode step failed: {type(exc).__name__}: {first_line(exc)}"
    else:
        reason = "its backend gives no decode step that can roll back (on this path)"
    if opened is not None:
        with opened as draft_step:
            if can_verify(draft_step):
                yield from speculative_tokens(step, ids, prompt_length, request, eos_ids, budget, stats, draft_step)
                return
    drafter.unused(reason)
    if request.prompt_lookup:
        yield from speculative_tokens(step, ids, prompt_length, request, eos_ids, budget, stats)
    else:
        yield from _sampled_tokens(step, ids, prompt_length, request, eos_ids)


def _sampled_tokens(
    step: Step, ids: list[int], prompt_length: int, request: GenerationRequest, eos_ids: Collection[int]
) -> Iterator[int]:
    """The tokens ``step``'s logits give, sampled as ``request`` asks, after ``ids`` (prompt and resumed tokens)."""
    rng = np.random.default_rng(request.seed)
    banned = sorted(eos_ids) if request.ignore_eos else []
    held = sorted({*banned, *eos_ids, *request.stop_token_ids})  # held back until min_new_tokens are out
    produced = len(ids) - prompt_length
    penalty = Penalty(ids, request.repetition_penalty) if request.repetition_penalty != 1.0 else None
    feed = np.asarray([ids], dtype=np.int64)
    for index in itertools.count(produced):
        try:
            logits = step(feed)
        except Cancelled:  # the consumer has left while the step waited for its batch
            return
        if index == produced:
            request.check_token_ids(logits.shape[-1])
        if not np.isfinite(logits).all():
            raise InferenceError(f"the model produced non-finite logits at step {index - produced}")
        if penalty is not None:
            logits = penalty(logits)
        token = next_token(logits, request, rng, held if index < request.min_new_tokens else banned)
        if penalty is not None:
            penalty.saw(token)
        yield token
        feed = np.asarray([[token]], dtype=np.int64)


def _engine_call(call: Callable[[], Any], produced: list[int]) -> Any:
    """``call()``, an engine's failure raised as ``PartialGeneration`` from its error."""
    try:
        return call()
    except (InvalidInputError, UnsupportedRequest, PartialGeneration, ResourceExhausted):
        raise
    except Exception as exc:
        raise partial_generation(exc, produced) from exc


def _reason(token: int, eos: frozenset[int], request: GenerationRequest) -> str:
    """The finish reason of generation that ended on ``token``."""
    if token in eos and not request.ignore_eos:
        return "eos"
    return "stop" if token in request.stop_token_ids else "length"


def _close(tokens: Any) -> None:
    """Tell the engine its iterator is no longer read; its failure to stop is logged, never raised over the result
    or over the error that ended generation."""
    close = getattr(tokens, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:
        log.warning("muai: the engine failed to stop its generation: %s: %s", type(exc).__name__, exc)
