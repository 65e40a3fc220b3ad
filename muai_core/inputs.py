"""Validation of ``forward`` inputs, shared by backends: token ids in, int64 arrays out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from muai_core.errors import InvalidInputError


def token_arrays(inputs: Mapping[str, Any], vocab_size: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` as int64 numpy arrays of shape [batch, seq], checked."""
    import numpy as np

    unknown = sorted(set(inputs) - {"input_ids", "attention_mask"})
    if unknown:
        raise InvalidInputError(
            f"unknown forward input(s): {', '.join(map(str, unknown))}", hint="pass input_ids and attention_mask only"
        )
    ids = _int_array(inputs["input_ids"], "input_ids")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise InvalidInputError(f"input_ids must lie in [0, {vocab_size}), got values {ids.min()}..{ids.max()}")
    mask = inputs.get("attention_mask")
    mask = np.ones_like(ids) if mask is None else _int_array(mask, "attention_mask")
    if mask.shape != ids.shape:
        raise InvalidInputError(f"attention_mask shape {mask.shape} differs from input_ids shape {ids.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise InvalidInputError("attention_mask must hold only 0 and 1")
    return ids, mask


def _int_array(value: Any, name: str) -> Any:
    import numpy as np

    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{name} must be a rectangular array of token ids: {exc}") from exc
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0 or array.shape[0] == 0:
        raise InvalidInputError(f"{name} must have shape [batch, seq] with seq >= 1, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)
