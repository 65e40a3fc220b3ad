"""A token-by-token decode loop for backends whose engine returns logits per step."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.errors import InferenceError, InvalidInputError
from muai_core.sampling import next_token
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
    """Generate with ``step`` until the budget, an EOS token or the streamer says stop.

    Non-finite logits raise ``InferenceError`` (so the resolver can fall back).
    """
    if not prompt_ids:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    budget = request.new_token_budget(len(prompt_ids), context_length)
    rng = np.random.default_rng(request.seed)
    stream = TextStream(decode, request.streamer)
    banned = list(eos_ids) if request.ignore_eos else []
    new_ids: list[int] = []
    stamps: list[float] = []
    finish = "length"
    started = time.perf_counter()
    ids = np.asarray([prompt_ids], dtype=np.int64)
    for index in range(budget):
        logits = step(ids)
        if not np.isfinite(logits).all():
            raise InferenceError(f"the model produced non-finite logits at step {index}")
        token = next_token(logits, request, rng, banned)
        stamps.append(time.perf_counter())
        new_ids.append(token)
        if token in eos_ids and not banned:
            finish = "eos"
            break
        stream.push(token)
        if stream.stopped:
            finish = "stopped"
            break
        ids = np.asarray([[token]], dtype=np.int64)
    stream.finish()
    completion = decode(new_ids)
    return GenerationResult(
        text=decode([*prompt_ids, *new_ids]) if request.keeps_prompt else completion,
        completion=completion,
        prompt_tokens=len(prompt_ids),
        token_ids=tuple(new_ids),
        finish_reason=finish,
        ttft_s=stamps[0] - started,
        token_latencies_s=tuple(b - a for a, b in zip(stamps, stamps[1:], strict=False)),
    )
