"""Batched decoding on a PyTorch model: the ``BatchEngine`` that ``muai_core.batching.StepBatcher`` drives.

Each admitted sequence owns a slot of one KV buffer per layer ([slots, kv_heads, positions, head_dim]); a
forward writes each row's keys and values at that row's own positions and attends through a per-row mask,
so sequences of different lengths decode together as one [B, 1] forward. Prompts run as forwards of their
own (rows of the same length together).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from muai_core.batching import BatchedSequence, Chunk
from muai_core.errors import UnsupportedRequest

#: KV bytes the sequences of one model may hold together; past it, a new sequence waits (one alone always runs).
KV_CACHE_BYTES = 1 << 30


class SlotEngine:
    """Runs the chunks of a batch on ``model`` (a transformers causal LM) with a slot per sequence."""

    def __init__(self, model: Any, device: str, context_length: int | None, kv_bytes: int = KV_CACHE_BYTES) -> None:
        self.model = model
        self.device = device
        self.context_length = context_length
        self.kv_bytes = kv_bytes
        self.cache = _SlotCache(_position_bytes(model.config, model.dtype))
        self._lock = threading.Lock()
        self._longest: dict[int, int] = {}  # slot -> positions reserved

    @property
    def held(self) -> int:
        """Sequences holding a slot now."""
        return len(self._longest)

    def admit(self, sequence: BatchedSequence, tokens: np.ndarray) -> bool:
        if self.context_length is not None and sequence.longest > self.context_length:
            raise UnsupportedRequest(
                f"the sequence needs {sequence.longest} positions; the model holds {self.context_length}",
                hint="shorten the prompt or lower max_new_tokens",
            )
        with self._lock:
            slots = len(self._longest) + 1
            longest = max([sequence.longest, *self._longest.values()])
            if self._longest and slots * longest * self.cache.position_bytes > self.kv_bytes:
                return False
            slot = next(s for s in range(slots) if s not in self._longest)
            self._longest[slot] = sequence.longest
            sequence.state = slot
            return True

    def release(self, sequence: BatchedSequence) -> None:
        with self._lock:
            self._longest.pop(sequence.state, None)
            if not self._longest:
                self.cache.free()

    def truncate(self, sequence: BatchedSequence, length: int) -> None:
        """Nothing to do: a chunk writes its keys and values at its own positions and sees no position after its
        own, so the rolled back positions are written over before they are seen."""

    def run(self, chunks: list[Chunk]) -> Sequence[np.ndarray]:
        import torch

        with self._lock:
            self.cache.reserve(max(self._longest, default=-1) + 1, max(self._longest.values(), default=0))
        groups: dict[int, list[int]] = {}
        for index, chunk in enumerate(chunks):
            groups.setdefault(len(chunk.tokens), []).append(index)
        rows: dict[int, np.ndarray] = {}
        with torch.inference_mode():
            for indices in groups.values():
                logits = self._forward([chunks[i] for i in indices])
                rows.update((i, logits[n] if chunks[i].every else logits[n, -1]) for n, i in enumerate(indices))
        return [rows[i] for i in range(len(chunks)) if chunks[i].wants_logits]

    def _forward(self, chunks: list[Chunk]) -> np.ndarray:
        """One forward of chunks of equal length; the float32 logits [rows, positions, vocab]: after each one's
        last token, or after each of its tokens where a chunk wants them all (``every``)."""
        import torch

        length = len(chunks[0].tokens)
        ids = torch.from_numpy(np.stack([c.tokens for c in chunks])).to(self.device)
        starts = torch.tensor([c.start for c in chunks], device=self.device)
        positions = starts[:, None] + torch.arange(length, device=self.device)
        width = max(c.start for c in chunks) + length
        visible = torch.arange(width, device=self.device)[None, None, :] <= positions[:, :, None]  # [B, q, kv]
        self.cache.place([c.sequence.state for c in chunks], positions, width)
        out = self.model(
            input_ids=ids,
            position_ids=positions,
            attention_mask=_attention_mask(visible[:, None], self.model),
            cache=self.cache,
            use_cache=True,
            logits_to_keep=0 if any(c.every for c in chunks) else 1,
        )
        return out.logits.float().cpu().numpy()


def _attention_mask(visible: Any, model: Any) -> Any:
    """The 4D mask in the form the model's attention takes: boolean for SDPA, additive for the others."""
    import torch

    if model.config._attn_implementation == "sdpa":
        return visible
    blocked = torch.finfo(model.dtype).min
    return torch.zeros(visible.shape, dtype=model.dtype, device=visible.device).masked_fill(~visible, blocked)


def _position_bytes(config: Any, dtype: Any) -> int:
    """KV bytes of one position of one sequence, all layers."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    return 2 * layers * kv_heads * head_dim * dtype.itemsize


def _slot_cache_class() -> type:
    from transformers.cache_utils import Cache

    class SlotCache(Cache):
        """A transformers ``Cache`` over per-layer slot buffers; ``place`` says where the next forward's rows go."""

        def __init__(self, position_bytes: int) -> None:
            super().__init__(layers=[])
            self.position_bytes = position_bytes
            self.keys: dict[int, Any] = {}
            self.values: dict[int, Any] = {}
            self.size = (0, 0)  # (slots, positions) the buffers hold at least
            self._rows: Any = None
            self._positions: Any = None
            self._width = 0
            self._span: slice | None = None

        def reserve(self, slots: int, positions: int) -> None:
            """Grow the buffers (on their next use) to hold ``slots`` slots of ``positions`` positions."""
            self.size = (max(self.size[0], slots), max(self.size[1], positions))

        def free(self) -> None:
            self.keys, self.values, self.size = {}, {}, (0, 0)

        def place(self, slots: list[int], positions: Any, width: int) -> None:
            import torch

            self._rows = torch.tensor(slots, device=positions.device)
            self._positions = positions
            self._width = width
            consecutive = slots == list(range(slots[0], slots[0] + len(slots)))
            self._span = slice(slots[0], slots[0] + len(slots)) if consecutive else None

        def update(self, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any) -> Any:
            keys = self._buffer(self.keys, layer_idx, key_states)
            values = self._buffer(self.values, layer_idx, value_states)
            rows = self._rows[:, None]
            keys[rows, :, self._positions] = key_states.transpose(1, 2)
            values[rows, :, self._positions] = value_states.transpose(1, 2)
            return self._read(keys), self._read(values)

        def _read(self, buffer: Any) -> Any:
            """The rows of this forward, ``width`` positions: a view when their slots are consecutive."""
            if self._span is not None:
                return buffer[self._span, :, : self._width]
            return buffer[self._rows, :, : self._width]

        def _buffer(self, buffers: dict[int, Any], layer: int, states: Any) -> Any:
            import torch

            slots, positions = self.size
            old = buffers.get(layer)
            if old is None or old.shape[0] < slots or old.shape[2] < positions:
                shape = (slots, states.shape[1], positions, states.shape[3])
                new = torch.zeros(shape, dtype=states.dtype, device=states.device)
                if old is not None:
                    new[: old.shape[0], :, : old.shape[2]] = old
                buffers[layer] = old = new
            return old

        def get_seq_length(self, layer_idx: int = 0) -> int:
            return self._width

    return SlotCache


def _SlotCache(position_bytes: int) -> Any:  # noqa: N802 (a class, made when torch is imported)
    return _slot_cache_class()(position_bytes)
