"""Generation and ``forward`` on a compiled model: batched steps on the paged graph, or one request at a time on
the stateful graph (KV cache inside OpenVINO); an encoder-decoder export runs ``muai_openvino.seq2seq``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.decoding import Step, decode_loop
from muai_core.errors import InferenceError
from muai_core.inputs import position_ids, token_arrays
from muai_openvino import seq2seq
from muai_openvino.runtime import OpenVINOModel


def generate(handle: OpenVINOModel, request: GenerationRequest) -> GenerationResult:
    if handle.encoder is not None:
        return seq2seq.generate(handle, request)
    codec = handle.codec
    prompt_ids = codec.encode(codec.prompt_text(request), add_special_tokens=not request.chat)
    batcher = handle.batcher
    if batcher is not None:
        longest = len(prompt_ids) + request.new_token_budget(len(prompt_ids), handle.context_length)
        with batcher.sequence(longest, request.cancel) as step:
            result = _decode(step, prompt_ids, handle, request)
        return replace(result, queue_wait_s=step.queue_wait_s)
    with handle.lock:
        handle.request.reset_state()
        try:
            return _decode(StatefulStep(handle, len(prompt_ids)), prompt_ids, handle, request)
        finally:
            handle.request.reset_state()


def _decode(step: Step, prompt_ids: list[int], handle: OpenVINOModel, request: GenerationRequest) -> GenerationResult:
    return decode_loop(
        step, prompt_ids, request, handle.codec.decode, eos_ids=handle.eos_ids, context_length=handle.context_length
    )


class StatefulStep:
    """One decode step on a stateful request: sets the new tokens, the mask and the positions, returns the logits.

    The mask and the positions are views of buffers that grow as the sequence does, so a step copies
    nothing and goes to OpenVINO without its Python input conversion.
    """

    def __init__(self, handle: OpenVINOModel, capacity: int) -> None:
        from openvino import Tensor

        self._tensor = Tensor
        self._handle = handle  # not the request: unloading drops it even while a traceback holds this step
        self._position = 0
        self._grow(capacity)
        handle.request.set_tensor("beam_idx", Tensor(np.zeros(1, dtype=np.int32)))

    def _grow(self, capacity: int) -> None:
        self._ones = np.ones((1, capacity), dtype=np.int64)
        self._positions = np.arange(capacity, dtype=np.int64)[None]

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        start, end = self._position, self._position + ids.shape[1]
        if end > self._ones.shape[1]:
            self._grow(2 * end)
        mask, positions = self._ones[:, :end], self._positions[:, start:end]
        for name, values in (("input_ids", ids), ("attention_mask", mask), ("position_ids", positions)):
            self._handle.request.set_tensor(name, self._tensor(values, shared_memory=True))
        outputs = self._handle.request.infer(share_outputs=True)
        self._position = end
        return outputs["logits"][0, -1]


def forward(handle: OpenVINOModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Logits for every position of every sequence, as float32 [batch, seq, vocab]."""
    if handle.encoder is not None:
        return seq2seq.forward(handle, inputs)
    ids, mask = token_arrays(inputs, handle.vocab_size, handle.context_length)
    with handle.lock:
        infer = handle.all_positions_request()
        infer.reset_state()
        outputs = infer.infer(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "position_ids": position_ids(mask),
                "beam_idx": np.arange(ids.shape[0], dtype=np.int32),
            }
        )
        infer.reset_state()
    logits = np.asarray(outputs["logits"], dtype=np.float32)
    if not np.isfinite(logits).all():
        raise InferenceError(f"OpenVINO produced non-finite logits for '{handle.directory.name}'")
    return {"logits": logits}
