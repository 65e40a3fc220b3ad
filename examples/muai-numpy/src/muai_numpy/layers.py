"""The NumPy building blocks of a decoder-only transformer, with Hugging Face's numerics."""

from __future__ import annotations

import math

import numpy as np

MASKED = np.finfo(np.float32).min


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ weight.T (+ bias)`` for a PyTorch ``nn.Linear`` weight [out, in]."""
    out = (x.reshape(-1, x.shape[-1]) @ weight.T).reshape(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + eps) * weight + bias


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def rope_tables(positions: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of rotary embeddings, shape [batch, 1, seq, head_dim], computed in float32."""
    inv_freq = (1.0 / theta ** (np.arange(0, head_dim, 2).astype(np.float32) / head_dim)).astype(np.float32)
    angles = positions.astype(np.float32)[..., None] * inv_freq
    angles = np.concatenate([angles, angles], axis=-1)[:, None]
    return np.cos(angles), np.sin(angles)


def rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return x * cos + np.concatenate([-x[..., half:], x[..., :half]], axis=-1) * sin


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, key_mask: np.ndarray) -> np.ndarray:
    """Causal attention of q [b, heads, s, d] over k, v [b, kv_heads, t, d] (t >= s, the last s are new).

    ``key_mask`` [b, t] marks the keys that may be attended to (Hugging Face's attention_mask).
    """
    groups = q.shape[1] // k.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves ``groups`` query heads
        k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
    s, t = q.shape[2], k.shape[2]
    scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(q.shape[-1]))
    causal = np.arange(t)[None, :] <= (t - s + np.arange(s))[:, None]
    allowed = causal[None, None] & key_mask.astype(bool)[:, None, None, :]
    return softmax(np.where(allowed, scores, MASKED)) @ v


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    b, s, width = x.shape
    return x.reshape(b, s, heads, width // heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    b, heads, s, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, heads * d)
