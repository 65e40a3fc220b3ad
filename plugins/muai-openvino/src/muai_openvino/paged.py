"""Decode steps on a PagedAttention graph: the KV cache lives in block tensors muai allocates and grows."""

from __future__ import annotations

from typing import Any

import numpy as np

from muai_core.errors import InferenceError, first_line
from muai_openvino.graph import CACHE_INPUTS, PAGED_INPUTS


class PagedCache:
    """The key/value block tensors of every layer of one compiled PagedAttention model.

    A sequence uses blocks 0..n-1 in order, reserved before its first step; a sequence that needs more than
    the tensors hold gets new ones (at least twice the blocks), so later ones of that length reuse them.
    """

    def __init__(self, compiled: Any) -> None:
        self._ports = [port for port in compiled.inputs if port.get_any_name().startswith(CACHE_INPUTS)]
        # CPU layouts: key [blocks, kv heads, block size (+ quantization rows), head size],
        # value [blocks, kv heads, block size, head size (+ quantization columns)].
        self.block_size = compiled.input("value_cache.0").get_partial_shape()[2].get_length()
        self.blocks = 0
        self._tensors: dict[str, Any] = {}

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def reserve(self, request: Any, tokens: int) -> None:
        """Make room for a sequence of ``tokens`` positions; sets new tensors on ``request`` (contents not kept)."""
        needed = self.blocks_for(tokens)
        if needed <= self.blocks:
            return
        from openvino import Tensor

        blocks = max(needed, 2 * self.blocks)
        for port in self._ports:
            name, shape = port.get_any_name(), port.get_partial_shape()
            self._tensors[name] = Tensor(
                port.get_element_type(), [blocks, *(shape[i].get_length() for i in range(1, 4))]
            )
            request.set_tensor(name, self._tensors[name])
        self.blocks = blocks


class PagedStep:
    """One decode step of one sequence on a PagedAttention request: returns the logits of its last token."""

    def __init__(self, handle: Any, tokens: int) -> None:
        """``tokens``: the longest the sequence can get (prompt and budget); its blocks are reserved now."""
        self._handle = handle  # not the request: unloading drops it even while a traceback holds this step
        self._position = 0
        try:
            handle.paged_cache.reserve(handle.request, tokens)
        except (MemoryError, RuntimeError) as exc:
            raise InferenceError(
                f"cannot allocate the KV cache for a sequence of {tokens} tokens: {first_line(exc)}",
                hint="ask for fewer new tokens",
            ) from exc

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        tokens = ids[0]
        start, end = self._position, self._position + len(tokens)
        blocks = self._handle.paged_cache.blocks_for(end)
        values = (
            tokens,
            np.arange(start, end, dtype=np.int64),
            np.array([start], dtype=np.int32),
            np.array([0, len(tokens)], dtype=np.int32),
            np.array([0, blocks], dtype=np.int32),
            np.arange(blocks, dtype=np.int32),
            np.array(end, dtype=np.int32),
        )
        outputs = self._handle.request.infer(
            dict(zip(PAGED_INPUTS, values, strict=True)), share_inputs=True, share_outputs=True
        )
        self._position = end
        return outputs["logits"][-1, -1]
