"""Load-time rewrites of an exported graph: logits only where they are sampled, PagedAttention."""

from __future__ import annotations

from typing import Any

import numpy as np

PASS_THROUGH = ("Convert", "Reshape")
#: What a PagedAttention graph takes besides its cache tensors (``paged.PagedEngine`` sets each of them).
PAGED_INPUTS = ("input_ids", "position_ids", "past_lens", "subsequence_begins", "block_indices_begins",
                "block_indices", "max_context_len")  # fmt: skip
CACHE_INPUTS = ("key_cache.", "value_cache.")
#: The input added to the PagedAttention graph: the token positions whose logits a batch wants.
SAMPLED_POSITIONS = "sampled_positions"


def logits_for_last_position(ov_model: Any) -> None:
    """Apply the LM head to the last position only (stateful graph), so a prefill does not compute logits it
    discards."""
    from openvino import opset13 as ops

    head = _lm_head(ov_model)
    last = ops.slice(
        head.input_value(0),
        np.array([-1], dtype=np.int64),
        np.array([np.iinfo(np.int64).max], dtype=np.int64),
        np.array([1], dtype=np.int64),
        np.array([1], dtype=np.int64),
    )
    head.input(0).replace_source_output(last.output(0))
    ov_model.validate_nodes_and_infer_types()


def logits_for_sampled_positions(ov_model: Any) -> None:
    """Apply the LM head only to the token positions a new ``sampled_positions`` input names (PagedAttention's
    [tokens, 1, hidden]): the last token of each sequence in a batch; logits are [positions, 1, vocab]."""
    from openvino import Type
    from openvino import opset13 as ops

    head = _lm_head(ov_model)
    positions = ops.parameter([-1], Type.i64, name=SAMPLED_POSITIONS)
    positions.output(0).get_tensor().set_names({SAMPLED_POSITIONS})
    rows = ops.gather(head.input_value(0), positions, np.array(0, dtype=np.int64))
    head.input(0).replace_source_output(rows.output(0))
    ov_model.add_parameters([positions])
    ov_model.validate_nodes_and_infer_types()


def _lm_head(ov_model: Any) -> Any:
    node = ov_model.output("logits").get_node().input_value(0).get_node()
    while node.get_type_name() in PASS_THROUGH:
        node = node.input_value(0).get_node()
    if node.get_type_name() != "MatMul":
        raise ValueError(f"the logits come from a {node.get_type_name()}, not the LM head's MatMul")
    return node


def to_paged_attention(ov_model: Any) -> None:
    """Move the KV cache out of the graph's state into per-layer block tensors fed as inputs (PagedAttention).

    Raises ``ValueError`` when the result is not the graph ``paged.PagedEngine`` drives.
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
    logits_for_sampled_positions(ov_model)
