"""A token-by-token decode loop for backends whose engine returns logits per step."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.errors import BackendError, InvalidInputError, PartialGeneration, UnsupportedRequest
from muai_core.sampling import Penalty, next_token
from muai_core.text import TextStream

#: Feeds the given token ids (the prompt first, then one token at a time) and returns the logits of the last.
Step = Callable[[np.ndarray], Any]


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

    A resumed request continues after its ``resume_ids``, which count in the budget and the result.
    A failing step, or non-finite logits, raises ``PartialGeneration`` holding the tokens produced so far
    (so the resolver can fall back and resume); ``InvalidInputError`` and ``UnsupportedRequest`` pass as raised.
    """
    if not prompt_ids:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    new_ids = list(request.resume_ids)
    budget = request.new_token_budget(len(prompt_ids), context_length) - len(new_ids)
    rng = np.random.default_rng(request.seed)
    stream = TextStream(decode, request.streamer, request.stop, new_ids)
    enders = frozenset({*eos_ids, *request.stop_token_ids})
    banned = sorted(eos_ids) if request.ignore_eos else []
    held, min_new = sorted({*banned, *enders}), request.min_new_tokens  # held back until min_new tokens are out
    penalty = None
    if request.repetition_penalty != 1.0:
        penalty = Penalty([*prompt_ids, *new_ids], request.repetition_penalty)
    stamps: list[float] = []
    finish = "length"
    started = time.perf_counter()
    ids = np.asarray([[*prompt_ids, *new_ids]], dtype=np.int64)
    for index in range(budget):
        logits = _checked_step(step, ids, index, new_ids)
        if index == 0:
            request.check_token_ids(logits.shape[-1])
        if penalty is not None:
            logits = penalty(logits)
        token = next_token(logits, request, rng, held if len(new_ids) < min_new else banned)
        stamps.append(time.perf_counter())
        new_ids.append(token)
        if penalty is not None:
            penalty.saw(token)
        stream.push(token)
        if stream.stopped_by_string:
            finish = "stop"
            break
        if token in enders:
            finish = "eos" if token in eos_ids else "stop"
            break
        if stream.stopped:
            finish = "stopped"
            break
        ids = np.asarray([[token]], dtype=np.int64)
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


def _checked_step(step: Step, ids: np.ndarray, index: int, produced: list[int]) -> Any:
    """``step(ids)``, its failure (or non-finite logits) raised as ``PartialGeneration`` from the engine's error."""
    try:
        logits = step(ids)
    except (InvalidInputError, UnsupportedRequest):
        raise
    except Exception as exc:
        raise partial_generation(exc, produced) from exc
    if not np.isfinite(logits).all():
        raise PartialGeneration(f"the model produced non-finite logits at step {index}", produced_ids=tuple(produced))
    return logits
