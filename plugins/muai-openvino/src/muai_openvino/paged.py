"""Decode steps on a PagedAttention graph: the KV cache lives in block tensors muai allocates and grows."""

from __future__ import annotations

from typing import Any

import numpy as np

from muai_core.errors import UnsupportedRequest, first_line
from muai_openvino.graph import CACHE_INPUTS


class PagedCache:
    """The key/value block tensors of every layer of one compiled PagedAttention model.

    A sequence uses blocks 0..n-1 in order, reserved before its first step or as it grows; a sequence that
    needs more than the tensors hold gets new ones (at least twice the blocks), so later ones of that length
    reuse them.
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

    def reserve(self, request: Any, tokens: int, keep: int = 0) -> None:
        """Make room for a sequence of ``tokens`` positions; sets new tensors on ``request``.

        The blocks of the first ``keep`` positions are copied into the new tensors, the rest is not kept.
        """
        needed = self.blocks_for(tokens)
        if needed <= self.blocks:
            return
        from openvino import Tensor

        blocks, kept = max(needed, 2 * self.blocks), self.blocks_for(keep)
        for port in self._ports:
            name, shape = port.get_any_name(), port.get_partial_shape()
            tensor = Tensor(port.get_element_type(), [blocks, *(shape[i].get_length() for i in range(1, 4))])
            if kept:
                old = self._tensors[name]
                size = old.byte_size // self.blocks * kept
                _bytes(tensor)[:size] = _bytes(old)[:size]
            self._tensors[name] = tensor
            request.set_tensor(name, tensor)
        self.blocks = blocks


def _bytes(tensor: Any) -> np.ndarray:
    """A tensor's memory as flat bytes (blocks are its first axis, so a block is a contiguous run)."""
    return tensor.data.reshape(-1).view(np.uint8)


class PagedStep:
    """One decode step of one sequence on a PagedAttention request: returns the logits of its last token.

    The scalar inputs are arrays shared with the request and rewritten in place, the positions and the block
    table views of arrays sized for the whole sequence: a step sets three small tensors, copies nothing, and
    skips OpenVINO's Python input conversion that ``infer(dict)`` does.
    """

    def __init__(self, handle: Any, tokens: int) -> None:
        """``tokens``: the longest the sequence can get (prompt and budget).

        Its blocks are reserved now where the model's context bounds it; else they grow as the sequence does.
        """
        from openvino import Tensor

        self._tensor = Tensor
        self._handle = handle  # not the request: unloading drops it even while a traceback holds this step
        self._position = 0
        self._longest = tokens
        self._positions = np.zeros(0, dtype=np.int64)
        self._block_table = np.zeros(0, dtype=np.int32)
        if handle.context_length is not None:
            self._grow(tokens)
        # One sequence: past_lens [start], subsequence_begins [0, new tokens], block_indices_begins [0, blocks].
        self._past_lens = np.zeros(1, dtype=np.int32)
        self._token_bounds = np.zeros(2, dtype=np.int32)
        self._block_bounds = np.zeros(2, dtype=np.int32)
        self._context = np.zeros((), dtype=np.int32)
        for name, values in (
            ("past_lens", self._past_lens),
            ("subsequence_begins", self._token_bounds),
            ("block_indices_begins", self._block_bounds),
            ("max_context_len", self._context),
        ):
            handle.request.set_tensor(name, Tensor(values, shared_memory=True))

    def _grow(self, tokens: int) -> None:
        """Room for at least ``tokens`` positions (doubling, up to the longest), keeping the sequence so far."""
        capacity = min(self._longest, max(tokens, 2 * len(self._positions)))
        try:
            self._handle.paged_cache.reserve(self._handle.request, capacity, keep=self._position)
        except (MemoryError, RuntimeError) as exc:  # this call is too long; shorter ones still run here
            raise UnsupportedRequest(
                f"cannot allocate the KV cache for a sequence of {capacity} tokens: {first_line(exc)}",
                hint="ask for fewer new tokens",
            ) from exc
        self._positions = np.arange(capacity, dtype=np.int64)
        self._block_table = np.arange(self._handle.paged_cache.blocks_for(capacity), dtype=np.int32)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        tokens = ids[0]
        start, end = self._position, self._position + len(tokens)
        if end > len(self._positions):
            self._grow(end)
        blocks = self._handle.paged_cache.blocks_for(end)
        self._past_lens[0] = start
        self._token_bounds[1] = len(tokens)
        self._block_bounds[1] = blocks
        self._context[...] = end
        request = self._handle.request
        for name, values in (
            ("input_ids", tokens),
            ("position_ids", self._positions[start:end]),
            ("block_indices", self._block_table[:blocks]),
        ):
            request.set_tensor(name, self._tensor(values, shared_memory=True))
        outputs = request.infer(share_outputs=True)
        self._position = end
        return outputs["logits"][-1, -1]
