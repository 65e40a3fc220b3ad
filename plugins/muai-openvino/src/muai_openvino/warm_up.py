"""A short generation through a freshly compiled model, at load rather than in the first request."""

from __future__ import annotations

from typing import Any

import numpy as np

from muai_openvino.graph import CACHE_INPUTS, SAMPLED_POSITIONS

#: The warm-up prompt's length: long enough for the CPU plugin's prefill kernels (at FP32 on an AVX512 CPU it
#: lays the weights out again for prompts of 8 tokens or more), then one decode step.
PROMPT_TOKENS = 16


def warm_up(compiled: Any, paged: bool) -> None:
    """Run a prompt of ``PROMPT_TOKENS`` and one decode step through a request of its own (dropped after).

    The CPU plugin copies weights into its own layouts on a model's first inferences (compressed weights, and
    at FP32 those of its prefill kernels); run here, that happens while load releases the weights file's pages
    (``mapped_weights.released_while``), so the file's pages and the copies do not both count in the process's
    peak memory.
    """
    request = compiled.create_infer_request()
    blocks = _set_cache(compiled, request, PROMPT_TOKENS + 1) if paged else 0
    for start, count in ((0, PROMPT_TOKENS), (PROMPT_TOKENS, 1)):
        request.infer(_paged_inputs(start, count, blocks) if paged else _stateful_inputs(start, count))


def _stateful_inputs(start: int, count: int) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.ones((1, count), dtype=np.int64),
        "attention_mask": np.ones((1, start + count), dtype=np.int64),
        "position_ids": np.arange(start, start + count, dtype=np.int64)[None, :],
        "beam_idx": np.zeros(1, dtype=np.int32),
    }


def _set_cache(compiled: Any, request: Any, tokens: int) -> int:
    """KV cache tensors on ``request`` with room for one sequence of ``tokens`` tokens; how many blocks that is."""
    from openvino import Tensor

    blocks = -(-tokens // compiled.input("value_cache.0").get_partial_shape()[2].get_length())
    for port in compiled.inputs:
        if port.get_any_name().startswith(CACHE_INPUTS):
            shape = port.get_partial_shape()
            tensor = Tensor(port.get_element_type(), [blocks, *(shape[i].get_length() for i in (1, 2, 3))])
            request.set_tensor(port.get_any_name(), tensor)
    return blocks


def _paged_inputs(start: int, count: int, blocks: int) -> dict[str, np.ndarray]:
    """``count`` tokens of one sequence after its first ``start``, its KV cache in blocks 0..``blocks``-1."""
    end = start + count
    return {
        "input_ids": np.ones(count, dtype=np.int64),
        "position_ids": np.arange(start, end, dtype=np.int64),
        "past_lens": np.array([start], dtype=np.int32),
        "subsequence_begins": np.array([0, count], dtype=np.int32),
        "block_indices": np.arange(blocks, dtype=np.int32),
        "block_indices_begins": np.array([0, blocks], dtype=np.int32),
        "max_context_len": np.array(end, dtype=np.int32),
        SAMPLED_POSITIONS: np.array([count - 1], dtype=np.int64),
    }
