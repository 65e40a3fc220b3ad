"""Load-time rewrites of an exported graph: logits for the last position only, PagedAttention."""

from __future__ import annotations

from typing import Any

import numpy as np

PASS_THROUGH = ("Convert", "Reshape")
#: What a PagedAttention graph takes besides its cache tensors (``paged.PagedStep`` sets each of them).
PAGED_INPUTS = ("input_ids", "position_ids", "past_lens", "subsequence_begins", "block_indices_begins",
                "block_indices", "max_context_len")  # fmt: skip
CACHE_INPUTS = ("key_cache.", "value_cache.")


def logits_for_last_position(ov_model: Any, token_axis: int = 1) -> None:
    """Apply the LM head to the last position only, so a prefill does not compute logits it discards.

    ``token_axis``: 1 for the stateful graph's [batch, tokens, hidden], 0 for PagedAttention's [tokens, 1, hidden].
    """
    from openvino import opset13 as ops

    node = ov_model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() in PASS_THROUGH:
        node = node.input_value(0).get_node()
    if node.get_type_name() != "MatMul":
        raise ValueError(f"the logits come from a {node.get_type_name()}, not the LM head's MatMul")
    hidden = node.input_value(0)
    last = ops.slice(
        hidden,
        np.array([-1], dtype=np.int64),
        np.array([np.iinfo(np.int64).max], dtype=np.int64),
        np.array([1], dtype=np.int64),
        np.array([token_axis], dtype=np.int64),
    )
    node.input(0).replace_source_output(last.output(0))
    ov_model.validate_nodes_and_infer_types()


def to_paged_attention(ov_model: Any) -> None:
    """Move the KV cache out of the graph's state into per-layer block tensors fed as inputs (PagedAttention).

    Raises ``ValueError`` when the result is not the graph ``paged.PagedStep`` drives.
    """
    from openvino._offline_transformations import paged_attention_transformation

    paged_attention_transformation(ov_model)
    names = {name for port in ov_model.inputs for name in port.get_names()}
    caches = {name for name in names if name.startswith(CACHE_INPUTS)}
    unknown, missing = names - caches - set(PAGED_INPUTS), set(PAGED_INPUTS) - names
    if not caches or unknown or missing:
        raise ValueError(
            f"the PagedAttention graph is not the one muai drives: KV cache inputs {len(caches)}, "
            f"unknown inputs {sorted(unknown)}, missing inputs {sorted(missing)}"
        )
    logits_for_last_position(ov_model, token_axis=0)
