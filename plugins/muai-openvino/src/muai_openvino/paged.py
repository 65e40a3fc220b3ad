"""Batched decode steps on a PagedAttention graph: many sequences per infer call, their KV cache in shared blocks."""

from __future__ import annotations

from typing import Any

import numpy as np

from muai_core.batching import BatchedSequence, Chunk
from muai_core.errors import UnsupportedRequest, first_line
from muai_openvino.blocks import BlockPool, Reservation, block_digests
from muai_openvino.graph import CACHE_INPUTS

HINT = "ask for fewer new tokens, or raise backend.openvino.kv_cache_bytes"


class PagedCache:
    """The key/value block tensors of every layer of one compiled PagedAttention model.

    They grow (copying the blocks they hold) when the pool needs more room; block ids stay valid.
    """

    def __init__(self, compiled: Any) -> None:
        self._ports = [port for port in compiled.inputs if port.get_any_name().startswith(CACHE_INPUTS)]
        # CPU layouts: key [blocks, kv heads, block size (+ quantization rows), head size],
        # value [blocks, kv heads, block size, head size (+ quantization columns)].
        self.block_size = compiled.input("value_cache.0").get_partial_shape()[2].get_length()
        self.block_bytes = sum(port.get_element_type().size * _block_elements(port) for port in self._ports)
        self.blocks = 0
        self._tensors: dict[str, Any] = {}

    def reserve(self, request: Any, blocks: int) -> None:
        """Make the tensors hold ``blocks`` blocks (keeping those they hold) and set them on ``request``."""
        if blocks <= self.blocks:
            return
        from openvino import Tensor

        tensors = {}
        for port in self._ports:
            name, shape = port.get_any_name(), port.get_partial_shape()
            tensor = Tensor(port.get_element_type(), [blocks, *(shape[i].get_length() for i in range(1, 4))])
            if self.blocks:
                old = _bytes(self._tensors[name])
                _bytes(tensor)[: old.size] = old
            tensors[name] = tensor
        for name, tensor in tensors.items():
            request.set_tensor(name, tensor)
        self._tensors, self.blocks = tensors, blocks


def _block_elements(port: Any) -> int:
    shape = port.get_partial_shape()
    return int(np.prod([shape[i].get_length() for i in range(1, 4)]))


def _bytes(tensor: Any) -> np.ndarray:
    """A tensor's memory as flat bytes (blocks are its first axis, so a block is a contiguous run)."""
    return tensor.data.reshape(-1).view(np.uint8)


class PagedEngine:
    """Runs the chunks of a batch as one infer call on a PagedAttention request (``muai_core.batching``'s engine).

    Each sequence gets a promise of every block it can need at admission, and takes them then (cached ones
    where the prefix cache has them) where the model's context bounds the sequence, else as it grows; the block
    tensors grow as blocks are taken. A failure to grow them at admission sends that one request to another
    backend; during a step, it fails the step's sequences, which fail over and resume.
    """

    def __init__(self, handle: Any, pool: BlockPool) -> None:
        from openvino import Tensor

        self._tensor = Tensor
        self._handle = handle  # not the request: unloading drops it even while a traceback holds this engine
        self.pool = pool

    def admit(self, sequence: BatchedSequence, tokens: np.ndarray) -> bool:
        pool = self.pool
        blocks = pool.blocks_for(sequence.longest)
        if blocks > pool.max_blocks:
            raise UnsupportedRequest(
                f"a sequence of {sequence.longest} tokens needs {blocks} KV cache blocks; the cache holds "
                f"{pool.max_blocks} ({pool.max_blocks * pool.block_size} tokens)",
                hint=HINT,
            )
        full = (len(tokens) - 1) // pool.block_size if pool.prefix_cache else 0  # the last token is always fed
        reservation = pool.reserve(block_digests(tokens, pool.block_size, full), blocks)
        if reservation is None:
            return False
        cached = [int(t) for t in tokens[: len(reservation.blocks) * pool.block_size]]
        # Blocks taken now (a failure to allocate them sends this request alone elsewhere): the whole sequence's
        # where the model's context bounds it, else the prompt's (the rest as it grows).
        upfront = pool.blocks_for(sequence.longest if self._handle.context_length else len(tokens))
        try:
            self._make_room(upfront - len(reservation.blocks))
            while len(reservation.blocks) < upfront:
                pool.take(reservation)
        except (MemoryError, RuntimeError) as exc:  # this sequence is too long here; shorter ones still run
            pool.release(reservation)
            raise UnsupportedRequest(
                f"cannot allocate the KV cache for a sequence of {sequence.longest} tokens: {first_line(exc)}",
                hint=HINT,
            ) from exc
        except BaseException:
            pool.release(reservation)
            raise
        sequence.state = _Blocks(reservation, cached)
        sequence.cached = len(cached)
        return True

    def run(self, chunks: list[Chunk]) -> list[np.ndarray]:
        pool = self.pool
        ends = [chunk.start + len(chunk.tokens) for chunk in chunks]
        reservations = [chunk.sequence.state.reservation for chunk in chunks]
        wanted = [pool.blocks_for(end) for end in ends]
        self._make_room(sum(n - len(r.blocks) for r, n in zip(reservations, wanted, strict=True)))
        tables = []
        for reservation, count in zip(reservations, wanted, strict=True):
            while len(reservation.blocks) < count:
                pool.take(reservation)
            tables.append(reservation.blocks[:count])
        lengths = [len(chunk.tokens) for chunk in chunks]
        bounds = np.cumsum([0, *lengths], dtype=np.int32)
        spans = [
            range(bounds[i] if chunk.every else bounds[i + 1] - 1, bounds[i + 1]) for i, chunk in enumerate(chunks)
        ]
        wanted_spans = [span for span, chunk in zip(spans, chunks, strict=True) if chunk.wants_logits]
        sampled = [int(row) for span in wanted_spans for row in span] or [0]
        positions = [np.arange(chunk.start, end, dtype=np.int64) for chunk, end in zip(chunks, ends, strict=True)]
        request = self._handle.request
        inputs = {
            "input_ids": np.concatenate([chunk.tokens for chunk in chunks]).astype(np.int64, copy=False),
            "position_ids": np.concatenate(positions),
            "past_lens": np.array([chunk.start for chunk in chunks], dtype=np.int32),
            "subsequence_begins": bounds,
            "block_indices": np.array([block for table in tables for block in table], dtype=np.int32),
            "block_indices_begins": np.cumsum([0, *map(len, tables)], dtype=np.int32),
            "max_context_len": np.array(max(ends), dtype=np.int32),
            "sampled_positions": np.array(sampled, dtype=np.int64),
        }
        for name, values in inputs.items():
            request.set_tensor(name, self._tensor(values, shared_memory=True))
        logits = request.infer(share_outputs=True)["logits"]
        for chunk in chunks:
            self._file(chunk)
        rows, out = 0, []
        for span, chunk in zip(wanted_spans, (c for c in chunks if c.wants_logits), strict=True):
            out.append(logits[rows : rows + len(span), -1] if chunk.every else logits[rows, -1])
            rows += len(span)
        return out

    def _make_room(self, blocks: int) -> None:
        """Grow the tensors (if the pool prefers that) so that ``blocks`` more blocks can be taken."""
        grow = self.pool.shortfall(blocks)
        if grow:
            cache = self._handle.paged_cache
            cache.reserve(self._handle.request, cache.blocks + grow)
            self.pool.grow(grow)

    def release(self, sequence: BatchedSequence) -> None:
        if sequence.state is not None:
            self.pool.release(sequence.state.reservation)

    def truncate(self, sequence: BatchedSequence, length: int) -> None:
        """Forget the tokens past ``length``; their blocks stay held, to be written over.

        A verified chunk's tokens are filed in the prefix cache only once the next chunk shows they were kept,
        so a block being written over was never filed (a filed block may be shared and is never written).
        """
        state: _Blocks = sequence.state
        if len(state.reservation.digests) * self.pool.block_size > length:
            raise RuntimeError(f"cannot roll back to {length} tokens: the blocks holding them are in the prefix cache")
        del state.tokens[length:]

    def _file(self, chunk: Chunk) -> None:
        """Record the chunk's tokens; file each block filled by kept tokens in the prefix cache (a verified
        chunk's own tokens may be rolled back: they are filed with the next chunk)."""
        state: _Blocks = chunk.sequence.state
        state.tokens.extend(int(t) for t in chunk.tokens)
        pool, filed = self.pool, len(state.reservation.digests)
        full = (chunk.start if chunk.every else len(state.tokens)) // pool.block_size
        if not pool.prefix_cache or full <= filed:
            return
        previous = state.reservation.digests[-1] if filed else b""
        for digest in block_digests(state.tokens[filed * pool.block_size :], pool.block_size, full - filed, previous):
            pool.file(state.reservation, digest)


def paged_stats(handle: Any) -> dict[str, int] | None:
    """The batch and KV cache figures of a paged model (None for the stateful graph)."""
    batcher, cache = handle.batcher, handle.paged_cache
    if batcher is None or cache is None:
        return None
    pool = batcher.engine.pool
    return {
        **batcher.stats(),
        "kv_block_tokens": pool.block_size,
        "kv_blocks_in_use": pool.in_use,
        "kv_blocks_cached": pool.cached,
        "kv_blocks_allocated": cache.blocks,
        "kv_blocks_max": pool.max_blocks,
        "kv_cache_bytes": cache.blocks * cache.block_bytes,
        "prefix_blocks_reused": pool.reused_blocks,
    }


class _Blocks:
    """A sequence's reservation and the tokens whose keys and values its blocks hold."""

    def __init__(self, reservation: Reservation, tokens: list[int]) -> None:
        self.reservation = reservation
        self.tokens = tokens
