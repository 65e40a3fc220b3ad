"""The decode loop over a stateful OpenVINO infer request: the KV cache stays inside OpenVINO."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.decoding import decode_loop
from muai_core.errors import InferenceError
from muai_core.inputs import token_arrays
from muai_openvino.runtime import OpenVINOModel


def generate(handle: OpenVINOModel, request: GenerationRequest) -> GenerationResult:
    codec = handle.codec
    prompt_ids = codec.encode(codec.prompt_text(request), add_special_tokens=not request.chat)
    beam = np.zeros(1, dtype=np.int32)
    position = 0

    def step(ids: np.ndarray) -> np.ndarray:
        nonlocal position
        length = ids.shape[1]
        outputs = handle.request.infer(
            {
                "input_ids": ids,
                "attention_mask": np.ones((1, position + length), dtype=np.int64),
                "position_ids": np.arange(position, position + length, dtype=np.int64)[None],
                "beam_idx": beam,
            },
            share_inputs=True,
            share_outputs=True,
        )
        position += length
        return outputs["logits"][0, -1]

    with handle.lock:
        handle.request.reset_state()
        try:
            return decode_loop(
                step,
                prompt_ids,
                request,
                codec.decode,
                eos_ids=handle.eos_ids,
                context_length=handle.context_length,
            )
        finally:
            handle.request.reset_state()


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
