"""Tracing a causal LM into OpenVINO and making it stateful: the KV cache lives inside OpenVINO.

The traced graph takes ``input_ids``, ``attention_mask`` (past + current), ``position_ids`` and
``beam_idx``; each layer's past keys and values become OpenVINO variables (ReadValue/Assign), read
through a Gather on ``beam_idx`` — the shape OpenVINO's CPU plugin fuses into one attention kernel
that keeps the cache itself. Only ``logits`` is an output.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from muai_core.errors import ModelLoadError

SUPPORTED_CACHE_LAYER = "DynamicLayer"


@dataclass(frozen=True)
class KVLayout:
    layers: int
    kv_heads: int
    head_dim: int


def kv_layout(config: Any) -> KVLayout:
    heads = config.num_attention_heads
    return KVLayout(
        layers=config.num_hidden_layers,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
    )


def convert(model: Any) -> Any:
    """The stateful ``openvino.Model`` of a transformers causal LM loaded with sdpa attention."""
    import openvino as ov
    import torch
    from openvino._offline_transformations import apply_make_stateful_transformation

    layout = kv_layout(model.config)
    wrapper = _cache_as_tensors(model, layout)
    batch, past, current = 2, 3, 4
    example = (
        torch.randint(0, model.config.vocab_size, (batch, current)),
        torch.ones(batch, past + current, dtype=torch.long),
        torch.arange(past, past + current).expand(batch, current).clone(),
        *[torch.randn(batch, layout.kv_heads, past, layout.head_dim) for _ in range(2 * layout.layers)],
    )
    with torch.no_grad(), warnings.catch_warnings(), _without_the_loss_type_warning():
        warnings.simplefilter("ignore")  # tracer warnings about shapes frozen into Python branches
        ov_model = ov.convert_model(wrapper, example_input=example)

    past_names = [f"past_key_values.{i}.{kv}" for i in range(layout.layers) for kv in ("key", "value")]
    present_names = [f"present.{i}.{kv}" for i in range(layout.layers) for kv in ("key", "value")]
    for port, name in zip(ov_model.inputs, ["input_ids", "attention_mask", "position_ids", *past_names], strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, ["logits", *present_names], strict=True):
        port.get_tensor().set_names({name})
    cache_shape = ov.PartialShape([-1, layout.kv_heads, -1, layout.head_dim])
    ov_model.reshape({name: cache_shape for name in past_names})
    apply_make_stateful_transformation(ov_model, dict(zip(past_names, present_names, strict=True)))
    _start_states_empty(ov_model, layout)
    _read_states_through_beam_idx(ov_model)
    ov_model.validate_nodes_and_infer_types()
    return ov_model


@contextmanager
def _without_the_loss_type_warning() -> Iterator[None]:
    """Drop transformers' "loss_type=None ... unrecognized" warning while tracing, and only that one.

    Tracing probes every attribute of every module; reading the base model's ``loss_function`` warns that
    it has no loss type, and an export never computes a loss.
    """
    logger = logging.getLogger("transformers.modeling_utils")

    def keep(record: logging.LogRecord) -> bool:
        return "loss_type=" not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _cache_as_tensors(model: Any, layout: KVLayout) -> Any:
    """``model`` wrapped so that its past keys/values are plain tensors in and out, which tracing sees."""
    import torch
    from transformers import DynamicCache

    cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):  # noqa: ANN001
            cache = DynamicCache(config=self.model.config)
            if len(cache.layers) != layout.layers or any(
                type(layer).__name__ != SUPPORTED_CACHE_LAYER for layer in cache.layers
            ):
                raise ModelLoadError(
                    f"{type(self.model).__name__} uses a cache the exporter does not support",
                    hint="muai export supports decoder-only models with a plain dynamic KV cache (GPT-2, llama, ...)",
                )
            for index, layer in enumerate(cache.layers):
                layer.keys, layer.values = past[2 * index], past[2 * index + 1]
                layer.device = layer.keys.device
                layer.is_initialized = True
            out = self.model(
                input_ids=input_ids,
                attention_mask=_causal_float_mask(attention_mask, input_ids.shape[1]),
                position_ids=position_ids,
                use_cache=True,
                **{cache_argument: cache},
            )
            present = getattr(out, "cache", None) or out.past_key_values
            return (out.logits, *[t for layer in present.layers for t in (layer.keys, layer.values)])

    return Wrapper()


def _causal_float_mask(attention_mask: Any, query_length: int) -> Any:
    """[batch, 1, query, past+query] additive mask: causal over the new tokens, padding from the 2D mask.

    A float mask (not transformers' boolean one) keeps the attention in a form OpenVINO fuses.
    """
    import torch

    total = attention_mask.shape[1]
    rows = torch.arange(query_length)[:, None] + (total - query_length)
    keep = (torch.arange(total)[None, :] <= rows)[None, None] & attention_mask[:, None, None, :].bool()
    return torch.zeros(keep.shape, dtype=torch.float32).masked_fill(~keep, torch.finfo(torch.float32).min)


def _start_states_empty(ov_model: Any, layout: KVLayout) -> None:
    """Each state starts as zeros of [batch, kv_heads, 0, head_dim], the batch taken from input_ids."""
    import openvino as ov
    from openvino import opset13 as ops

    batch = ops.gather(
        ops.shape_of(ov_model.input("input_ids"), output_type="i64"),
        ops.constant(np.array([0], dtype=np.int64)),
        ops.constant(np.int64(0)),
    )
    rest = ops.constant(np.array([layout.kv_heads, 0, layout.head_dim], dtype=np.int64))
    shape = ops.concat([batch, rest], axis=0)
    for op in ov_model.get_ops():
        if op.get_type_name() == "ReadValue":
            zero = ops.constant(np.float32(0.0), dtype=ov.Type.f32)
            op.set_arguments([ops.broadcast(zero, shape)])


def _read_states_through_beam_idx(ov_model: Any) -> None:
    import openvino as ov
    from openvino import opset13 as ops

    beam_idx = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    for op in ov_model.get_ops():
        if op.get_type_name() == "ReadValue":
            readers = list(op.output(0).get_target_inputs())
            reordered = ops.gather(op.output(0), beam_idx.output(0), ops.constant(np.int64(0)))
            for reader in readers:
                reader.replace_source_output(reordered.output(0))
    ov_model.add_parameters([beam_idx])
