"""Llama- and GPT-2-family networks over NumPy weights, with a KV cache."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from muai_core.errors import ModelLoadError
from muai_core.inputs import position_ids
from muai_numpy.layers import (
    attention,
    gelu_tanh,
    layer_norm,
    linear,
    merge_heads,
    rms_norm,
    rope_tables,
    rotate,
    silu,
    split_heads,
)

HINT = "muai-numpy runs llama- and GPT-2-family checkpoints; use another backend for this model"


class KVCache:
    """Keys and values of every layer, [batch, kv_heads, tokens, head_dim], grown as tokens are fed."""

    def __init__(self, layers: int) -> None:
        self.entries: list[tuple[np.ndarray, np.ndarray] | None] = [None] * layers

    @property
    def length(self) -> int:
        first = self.entries[0]
        return 0 if first is None else first[0].shape[2]

    def extend(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        old = self.entries[layer]
        if old is not None:
            k, v = np.concatenate([old[0], k], axis=2), np.concatenate([old[1], v], axis=2)
        self.entries[layer] = (k, v)
        return k, v


class Network:
    """``run(ids, key_mask, cache)`` -> logits [batch, seq, vocab] for ``ids`` fed after the cached tokens."""

    vocab_size: int
    context_length: int
    layers: int

    def __init__(self, config: Mapping[str, Any], tensors: dict[str, np.ndarray]) -> None:
        self.tensors = tensors

    def weight(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name]
        except KeyError:
            raise ModelLoadError(f"the checkpoint has no tensor {name}", hint=HINT) from None

    def bias(self, name: str) -> np.ndarray | None:
        return self.tensors.get(name)

    def new_cache(self) -> KVCache:
        return KVCache(self.layers)

    def run(self, ids: np.ndarray, key_mask: np.ndarray, cache: KVCache) -> np.ndarray:
        raise NotImplementedError


class Llama(Network):
    """LlamaForCausalLM (SmolLM2, TinyLlama, ...): RMSNorm, rotary positions, grouped-query attention, SwiGLU."""

    def __init__(self, config: Mapping[str, Any], tensors: dict[str, np.ndarray]) -> None:
        super().__init__(config, tensors)
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise ModelLoadError(f"RoPE type {rope.get('rope_type', rope.get('type'))!r} is not implemented", hint=HINT)
        if config.get("hidden_act", "silu") != "silu":
            raise ModelLoadError(f"activation {config.get('hidden_act')!r} is not implemented", hint=HINT)
        self.heads = int(config["num_attention_heads"])
        self.kv_heads = int(config.get("num_key_value_heads") or self.heads)
        self.head_dim = int(config.get("head_dim") or config["hidden_size"] // self.heads)
        self.theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.layers = int(config["num_hidden_layers"])
        self.vocab_size = int(config["vocab_size"])
        self.context_length = int(config.get("max_position_embeddings", 2048))
        self.embed = self.weight("model.embed_tokens.weight")
        self.lm_head = self.tensors.get("lm_head.weight", self.embed)

    def run(self, ids: np.ndarray, key_mask: np.ndarray, cache: KVCache) -> np.ndarray:
        positions = np.broadcast_to(cache.length + np.arange(ids.shape[1]), ids.shape)
        cos, sin = rope_tables(positions, self.head_dim, self.theta)
        h = self.embed[ids]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            x = rms_norm(h, self.weight(p + "input_layernorm.weight"), self.eps)
            q = rotate(split_heads(self._proj(x, p + "self_attn.q_proj"), self.heads), cos, sin)
            k = rotate(split_heads(self._proj(x, p + "self_attn.k_proj"), self.kv_heads), cos, sin)
            v = split_heads(self._proj(x, p + "self_attn.v_proj"), self.kv_heads)
            k, v = cache.extend(i, k, v)
            h = h + self._proj(merge_heads(attention(q, k, v, key_mask)), p + "self_attn.o_proj")
            x = rms_norm(h, self.weight(p + "post_attention_layernorm.weight"), self.eps)
            gated = silu(self._proj(x, p + "mlp.gate_proj")) * self._proj(x, p + "mlp.up_proj")
            h = h + self._proj(gated, p + "mlp.down_proj")
        return linear(rms_norm(h, self.weight("model.norm.weight"), self.eps), self.lm_head)

    def _proj(self, x: np.ndarray, name: str) -> np.ndarray:
        return linear(x, self.weight(name + ".weight"), self.bias(name + ".bias"))


class GPT2(Network):
    """GPT2LMHeadModel: learned positions, LayerNorm, fused QKV (Conv1D weights [in, out]), tanh GELU."""

    def __init__(self, config: Mapping[str, Any], tensors: dict[str, np.ndarray]) -> None:
        tensors = {k.removeprefix("transformer."): v for k, v in tensors.items()}
        super().__init__(config, tensors)
        if config.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ModelLoadError(f"activation {config.get('activation_function')!r} is not implemented", hint=HINT)
        if config.get("scale_attn_by_inverse_layer_idx") or config.get("reorder_and_upcast_attn"):
            raise ModelLoadError("GPT-2 attention variants are not implemented", hint=HINT)
        self.heads = int(config["n_head"])
        self.eps = float(config.get("layer_norm_epsilon", 1e-5))
        self.layers = int(config["n_layer"])
        self.vocab_size = int(config["vocab_size"])
        self.context_length = int(config.get("n_positions", 1024))
        self.wte, self.wpe = self.weight("wte.weight"), self.weight("wpe.weight")

    def run(self, ids: np.ndarray, key_mask: np.ndarray, cache: KVCache) -> np.ndarray:
        positions = position_ids(key_mask)[:, -ids.shape[1] :]  # left padding shifts a row's positions
        h = self.wte[ids] + self.wpe[positions]
        for i in range(self.layers):
            p = f"h.{i}."
            q, k, v = np.split(self._conv(self._norm(h, p + "ln_1"), p + "attn.c_attn"), 3, axis=-1)
            k, v = cache.extend(i, split_heads(k, self.heads), split_heads(v, self.heads))
            h = h + self._conv(merge_heads(attention(split_heads(q, self.heads), k, v, key_mask)), p + "attn.c_proj")
            x = gelu_tanh(self._conv(self._norm(h, p + "ln_2"), p + "mlp.c_fc"))
            h = h + self._conv(x, p + "mlp.c_proj")
        return linear(self._norm(h, "ln_f"), self.wte)

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return layer_norm(x, self.weight(name + ".weight"), self.weight(name + ".bias"), self.eps)

    def _conv(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.weight(name + ".weight") + self.weight(name + ".bias")


ARCHITECTURES: dict[str, type[Network]] = {"llama": Llama, "gpt2": GPT2}
