"""Decode steps on a PagedAttention graph: the KV cache lives in block tensors muai allocates and grows."""

from __future__ import annotations

from typing import Any

import numpy as np

from muai_openvino.graph import CACHE_INPUTS, PAGED_INPUTS


class PagedCache:
    """The key/value block tensors of every layer of one compiled PagedAttention model.

    One sequence uses blocks 0..n-1 in order; when it needs more, every tensor is replaced by one with
    twice the blocks and the filled blocks are copied over.
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
        """Make room for ``tokens`` positions, keeping what the blocks hold; sets grown tensors on ``request``."""
        needed = self.blocks_for(tokens)
        if needed <= self.blocks:
            return
        from openvino import Tensor

        blocks = max(needed, 2 * self.blocks)
        for port in self._ports:
            name, shape = port.get_any_name(), port.get_partial_shape()
            tensor = Tensor(port.get_element_type(), [blocks, *(shape[i].get_length() for i in range(1, 4))])
            if name in self._tensors:
                tensor.data[: self.blocks] = self._tensors[name].data
            self._tensors[name] = tensor
            request.set_tensor(name, tensor)
        self.blocks = blocks


class PagedStep:
    """One decode step of one sequence on a PagedAttention request: returns the logits of its last token."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle  # not the request: unloading drops it even while a traceback holds this step
        self._position = 0

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        tokens = ids[0]
        start, end = self._position, self._position + len(tokens)
        cache, request = self._handle.paged_cache, self._handle.request
        cache.reserve(request, end)
        blocks = cache.blocks_for(end)
        values = (
            tokens,
            np.arange(start, end, dtype=np.int64),
            np.array([start], dtype=np.int32),
            np.array([0, len(tokens)], dtype=np.int32),
            np.array([0, blocks], dtype=np.int32),
            np.arange(blocks, dtype=np.int32),
            np.array(end, dtype=np.int32),
        )
        outputs = request.infer(dict(zip(PAGED_INPUTS, values, strict=True)), share_inputs=True, share_outputs=True)
        self._position = end
        return outputs["logits"][-1, -1]
