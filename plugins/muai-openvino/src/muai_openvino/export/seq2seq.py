"""Tracing an encoder-decoder LM (T5, BART) into two OpenVINO models: an encoder and a stateful decoder.

The encoder model takes ``input_ids`` and ``attention_mask`` and returns, per decoder layer, the
cross-attention keys and values (``cross.{i}.key`` / ``cross.{i}.value``): the encoder output projected
once per request. The decoder model takes the new decoder tokens (``input_ids``), the encoder's
``attention_mask`` (as ``encoder_attention_mask``), those cross keys/values and ``beam_idx``, and returns
``logits``; its self-attention KV cache lives in OpenVINO state, as the causal export's does.

Feeding the cross keys/values back as inputs (not recomputing them from the encoder output at each step,
and not keeping them in state) keeps the decoder one plain graph: the runtime sets the same tensors on
every step without copying them, and a decoder step never projects the encoder output again.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from muai_core.errors import ModelLoadError
from muai_openvino.export.convert import (
    KVLayout,
    _read_states_through_beam_idx,
    _start_states_empty,
    _without_the_loss_type_warning,
)


@dataclass(frozen=True)
class Seq2SeqLayout:
    """The decoder's self-attention cache (``self_kv``) and the shape of its cross-attention keys/values."""

    self_kv: KVLayout
    cross_heads: int
    cross_head_dim: int


def seq2seq_layout(config: Any) -> Seq2SeqLayout:
    layers = getattr(config, "num_decoder_layers", None) or getattr(config, "decoder_layers", None)
    heads = getattr(config, "num_heads", None) or getattr(config, "decoder_attention_heads", None)
    if not layers or not heads:
        raise ModelLoadError(
            f"{config.model_type} is an encoder-decoder model the exporter does not know",
            hint="muai export supports T5- and BART-family models; run this one on the pytorch backend",
        )
    head_dim = getattr(config, "d_kv", None) or config.d_model // heads
    return Seq2SeqLayout(KVLayout(layers, heads, head_dim), heads, head_dim)


def self_names(layout: Seq2SeqLayout, prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{kv}" for i in range(layout.self_kv.layers) for kv in ("key", "value")]


def convert_seq2seq(model: Any) -> tuple[Any, Any]:
    """The encoder and the stateful decoder ``openvino.Model`` of a transformers seq2seq LM (eager attention)."""
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    layout = seq2seq_layout(model.config)
    kv = layout.self_kv
    batch, source, past, current = 2, 5, 3, 4
    cross = self_names(layout, "cross")
    ids = torch.randint(0, model.config.vocab_size, (batch, source))
    mask = torch.ones(batch, source, dtype=torch.long)
    with torch.no_grad(), warnings.catch_warnings(), _without_the_loss_type_warning():
        warnings.simplefilter("ignore")  # tracer warnings about shapes frozen into Python branches
        encoder = ov.convert_model(_Encoder(model, layout), example_input=(ids, mask))
        example = (
            torch.randint(0, model.config.vocab_size, (batch, current)),
            mask,
            *[torch.randn(batch, kv.kv_heads, past, kv.head_dim) for _ in range(2 * kv.layers)],
            *[torch.randn(batch, layout.cross_heads, source, layout.cross_head_dim) for _ in range(2 * kv.layers)],
        )
        decoder = ov.convert_model(_Decoder(model, kv.layers), example_input=example)

    _name_ports(encoder.inputs, ["input_ids", "attention_mask"])
    _name_ports(encoder.outputs, cross)
    past_names, present_names = self_names(layout, "past_key_values"), self_names(layout, "present")
    _name_ports(decoder.inputs, ["input_ids", "encoder_attention_mask", *past_names, *cross])
    _name_ports(decoder.outputs, ["logits", *present_names])
    cache_shape = ov.PartialShape([-1, kv.kv_heads, -1, kv.head_dim])
    cross_shape = ov.PartialShape([-1, layout.cross_heads, -1, layout.cross_head_dim])
    decoder.reshape({**{name: cache_shape for name in past_names}, **{name: cross_shape for name in cross}})
    apply_make_stateful_transformation(decoder, dict(zip(past_names, present_names, strict=True)))
    _start_states_empty(decoder, kv)
    _read_states_through_beam_idx(decoder)
    decoder.validate_nodes_and_infer_types()
    return encoder, decoder


def _name_ports(ports: Any, names: list[str]) -> None:
    for port, name in zip(ports, names, strict=True):
        port.get_tensor().set_names({name})


def _filled_cache(self_kv: tuple[Any, ...], cross_kv: tuple[Any, ...], cross_ready: bool) -> Any:
    """An ``EncoderDecoderCache`` holding the given self-attention past and cross-attention keys/values.

    With ``cross_ready`` the decoder reads the cross keys/values, never recomputing them from the encoder output.
    """
    from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache

    caches = []
    for tensors in (self_kv, cross_kv):
        cache = DynamicCache()
        for index in range(len(tensors) // 2):  # set as tracing sees them (a first update would start from [])
            layer = DynamicLayer()
            layer.keys, layer.values = tensors[2 * index], tensors[2 * index + 1]
            layer.device, layer.dtype, layer.is_initialized = layer.keys.device, layer.keys.dtype, True
            cache.layers.append(layer)
        caches.append(cache)
    cache = EncoderDecoderCache(*caches)
    cache.is_updated = dict.fromkeys(range(len(cross_kv) // 2), cross_ready)
    return cache


class _Encoder(torch.nn.Module):
    """input_ids, attention_mask -> each decoder layer's cross-attention keys and values."""

    def __init__(self, model: Any, layout: Seq2SeqLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout

    def forward(self, input_ids, attention_mask):  # noqa: ANN001, ANN201
        encoded = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        batch, kv = input_ids.shape[0], self.layout.self_kv
        empty_self = [torch.zeros(batch, kv.kv_heads, 0, kv.head_dim) for _ in range(2 * kv.layers)]
        empty_cross = [
            torch.zeros(batch, self.layout.cross_heads, 0, self.layout.cross_head_dim) for _ in range(2 * kv.layers)
        ]
        cache = _filled_cache(tuple(empty_self), tuple(empty_cross), cross_ready=False)
        start = torch.zeros(batch, 1, dtype=torch.long)  # a decoder pass fills the cross cache
        self.model(encoder_outputs=encoded, attention_mask=attention_mask, decoder_input_ids=start, cache=cache)
        return tuple(t for layer in cache.cross_attention_cache.layers for t in (layer.keys, layer.values))


class _Decoder(torch.nn.Module):
    """input_ids (decoder), encoder_attention_mask, self past, cross keys/values -> logits, self present."""

    def __init__(self, model: Any, layers: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers

    def forward(self, input_ids, encoder_attention_mask, *tensors):  # noqa: ANN001, ANN201
        from transformers.modeling_outputs import BaseModelOutput

        past, cross = tensors[: 2 * self.layers], tensors[2 * self.layers :]
        cache = _filled_cache(past, cross, cross_ready=True)
        batch, source = encoder_attention_mask.shape
        # the encoder output itself is never read (the cache holds its projections): a stand-in of its shape
        stand_in = cross[0].new_zeros(batch, source, self.model.config.d_model)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=stand_in),
            attention_mask=encoder_attention_mask,
            decoder_input_ids=input_ids,
            cache=cache,
            use_cache=True,
        )
        present = out.past_key_values.self_attention_cache
        return (out.logits, *[t for layer in present.layers for t in (layer.keys, layer.values)])
