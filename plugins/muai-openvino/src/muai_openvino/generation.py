"""The decode loop over a stateful OpenVINO infer request: the KV cache stays inside OpenVINO."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.errors import InferenceError, InvalidInputError
from muai_core.inputs import token_arrays
from muai_core.text import TextStream
from muai_openvino.runtime import OpenVINOModel
from muai_openvino.sampling import next_token


def generate(handle: OpenVINOModel, request: GenerationRequest) -> GenerationResult:
    codec = handle.codec
    prompt_ids = codec.encode(codec.prompt_text(request), add_special_tokens=not request.chat)
    if not prompt_ids:
        raise InvalidInputError("the prompt encodes to no tokens", hint="pass some text the tokenizer can encode")
    budget = request.new_token_budget(len(prompt_ids), handle.context_length)
    rng = np.random.default_rng(request.seed)
    stream = TextStream(codec.decode, request.streamer)
    new_ids: list[int] = []
    stamps: list[float] = []
    started = time.perf_counter()
    with handle.lock:
        infer = handle.request
        infer.reset_state()
        beam = np.zeros(1, dtype=np.int32)
        ids = np.asarray([prompt_ids], dtype=np.int64)
        position = 0
        for step in range(budget):
            length = ids.shape[1]
            outputs = infer.infer(
                {
                    "input_ids": ids,
                    "attention_mask": np.ones((1, position + length), dtype=np.int64),
                    "position_ids": np.arange(position, position + length, dtype=np.int64)[None],
                    "beam_idx": beam,
                },
                share_inputs=True,
                share_outputs=True,
            )
            logits = outputs["logits"][0, -1]
            if not np.isfinite(logits).all():
                raise InferenceError(f"OpenVINO produced non-finite logits at step {step} of '{handle.directory.name}'")
            if request.ignore_eos and handle.eos_ids:
                logits = logits.copy()
                logits[list(handle.eos_ids)] = -np.inf
            token = next_token(logits, request, rng)
            stamps.append(time.perf_counter())
            new_ids.append(token)
            position += length
            if token in handle.eos_ids:  # never true with ignore_eos
                break
            stream.push(token)
            if stream.stopped:
                break
            ids = np.asarray([[token]], dtype=np.int64)
        infer.reset_state()
    stream.finish()
    if new_ids and new_ids[-1] in handle.eos_ids:
        finish = "eos"
    else:
        finish = "stopped" if stream.stopped else "length"
    completion = codec.decode(new_ids)
    return GenerationResult(
        text=codec.decode(prompt_ids + new_ids) if request.return_full_text else completion,
        completion=completion,
        prompt_tokens=len(prompt_ids),
        token_ids=tuple(new_ids),
        finish_reason=finish,
        ttft_s=stamps[0] - started,
        token_latencies_s=tuple(b - a for a, b in zip(stamps, stamps[1:], strict=False)),
    )


def forward(handle: OpenVINOModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Logits for every position of every sequence, as float32 [batch, seq, vocab]."""
    ids, mask = token_arrays(inputs, handle.vocab_size)
    with handle.lock:
        infer = handle.all_positions_request()
        infer.reset_state()
        outputs = infer.infer(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "position_ids": np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy(),
                "beam_idx": np.arange(ids.shape[0], dtype=np.int32),
            }
        )
        infer.reset_state()
    logits = np.asarray(outputs["logits"], dtype=np.float32)
    if not np.isfinite(logits).all():
        raise InferenceError(f"OpenVINO produced non-finite logits for '{handle.directory.name}'")
    return {"logits": logits}
