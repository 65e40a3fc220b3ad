"""Validation shared by backends: ``forward``'s token ids in, int64 arrays out; a config's context length."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from muai_core.errors import InvalidInputError, ModelLoadError


def token_arrays(inputs: Mapping[str, Any], vocab_size: int, context_length: int | None = None) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` as int64 numpy arrays of shape [batch, seq], checked.

    A sequence longer than ``context_length`` (the model's, where known) is refused.
    """
    import numpy as np

    unknown = sorted(set(inputs) - {"input_ids", "attention_mask"})
    if unknown:
        raise InvalidInputError(
            f"unknown forward input(s): {', '.join(map(str, unknown))}", hint="pass input_ids and attention_mask only"
        )
    ids = _int_array(inputs["input_ids"], "input_ids")
    if context_length is not None and ids.shape[1] > context_length:
        raise InvalidInputError(
            f"input_ids has {ids.shape[1]} positions but the model's context holds {context_length}",
            hint=f"pass at most {context_length} token ids per sequence",
        )
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise InvalidInputError(f"input_ids must lie in [0, {vocab_size}), got values {ids.min()}..{ids.max()}")
    mask = inputs.get("attention_mask")
    mask = np.ones_like(ids) if mask is None else _int_array(mask, "attention_mask")
    if mask.shape != ids.shape:
        raise InvalidInputError(f"attention_mask shape {mask.shape} differs from input_ids shape {ids.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise InvalidInputError("attention_mask must hold only 0 and 1")
    return ids, mask


def position_ids(mask: Any) -> Any:
    """The position of each token counting only unmasked ones (as transformers' ``generate`` sets them), so a
    left-padded row gives, at its real positions, the logits it gives alone."""
    import numpy as np

    return np.maximum(np.cumsum(mask, axis=-1) - 1, 0).astype(np.int64)


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


#: The config.json fields that give a model's context length, in the order they are read.
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions")


def context_length(config: Mapping[str, Any], model_name: str) -> int | None:
    """The context length in a model's config (the first of ``CONTEXT_FIELDS`` set), None when none is.

    A value that is not a positive int raises ``ModelLoadError`` naming the field.
    """
    for name in CONTEXT_FIELDS:
        value = config.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(
                f"{name} in the config.json of '{model_name}' must be a positive int (the context length), "
                f"got {value!r}",
                hint="fix config.json, or re-download the model (and export it again)",
            )
        return value
    return None
