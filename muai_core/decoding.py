"""A token-by-token decode loop for backends whose engine returns logits per step."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.errors import InferenceError, InvalidInputError
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

    Non-finite logits raise ``InferenceError`` (so the resolver can fall back).
    """
    if not prompt_ids:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    budget = request.new_token_budget(len(prompt_ids), context_length)
    rng = np.random.default_rng(request.seed)
    stream = TextStream(decode, request.streamer, request.stop)
    enders = frozenset({*eos_ids, *request.stop_token_ids})
    banned = sorted(eos_ids) if request.ignore_eos else []
    held, min_new = sorted({*banned, *enders}), request.min_new_tokens  # held back until min_new tokens are out
    penalty = Penalty(prompt_ids, request.repetition_penalty) if request.repetition_penalty != 1.0 else None
    new_ids: list[int] = []
    stamps: list[float] = []
    finish = "length"
    started = time.perf_counter()
    ids = np.asarray([prompt_ids], dtype=np.int64)
    for index in range(budget):
        logits = step(ids)
        if index == 0:
            request.check_token_ids(logits.shape[-1])
        if not np.isfinite(logits).all():
            raise InferenceError(f"the model produced non-finite logits at step {index}")
        if penalty is not None:
            logits = penalty(logits)
        token = next_token(logits, request, rng, held if index < min_new else banned)
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
        ttft_s=stamps[0] - started,
        token_latencies_s=tuple(b - a for a, b in zip(stamps, stamps[1:], strict=False)),
    )
