"""Encoder-decoder exports (T5, BART): compiling the encoder and the stateful decoder, generation and forward.

One request at a time per model (the handle's lock). The encoder runs once per request and returns each
decoder layer's cross-attention keys/values; every decoder step reads those tensors (set once, not copied)
while its self-attention cache lives in OpenVINO state. See ``muai_openvino.export.seq2seq``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from muai_core.contracts import GenerationRequest, GenerationResult
from muai_core.errors import InferenceError, ModelLoadError
from muai_core.model_source import json_object
from muai_core.seq2seq import decode_seq2seq, seq2seq_arrays
from muai_openvino.export_layout import DECODER_BIN, DECODER_XML, ENCODER_BIN, ENCODER_XML
from muai_openvino.mapped_weights import read_mapped, release

#: The decoder's inputs besides the cross-attention keys/values.
DECODER_INPUTS = ("input_ids", "encoder_attention_mask", "beam_idx")


def compile_seq2seq(
    core: Any, directory: Path, device: str, properties: dict[str, str], mmap: bool, hint: str
) -> tuple[Any, Any]:
    """The compiled encoder and decoder of the export in ``directory``."""
    compiled = []
    for xml, weights in ((ENCODER_XML, ENCODER_BIN), (DECODER_XML, DECODER_BIN)):
        ov_model, mapped = read_mapped(core, directory / xml, directory / weights, mmap)
        if xml == DECODER_XML:
            names = {name for port in ov_model.inputs for name in port.get_names()}
            if not set(DECODER_INPUTS) <= names:
                raise ModelLoadError(
                    f"{directory / xml} lacks the inputs of a stateful muai decoder "
                    f"({', '.join(sorted(set(DECODER_INPUTS) - names))})",
                    hint=hint,
                )
        compiled.append(core.compile_model(ov_model, device, properties))
        release(mapped)  # while ov_model still maps them
        del ov_model
    return compiled[0], compiled[1]


def decoder_start_id(directory: Path, config: Mapping[str, Any], name: str, hint: str) -> int:
    """generation_config.json's ``decoder_start_token_id``, else config.json's."""
    generation = json_object(directory / "generation_config.json", hint=hint)
    start = generation.get("decoder_start_token_id", config.get("decoder_start_token_id"))
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise ModelLoadError(
            f"the encoder-decoder export of '{name}' has no decoder_start_token_id (got {start!r})", hint=hint
        )
    return start


def generate(handle: Any, request: GenerationRequest) -> GenerationResult:
    codec = handle.codec
    prompt_ids = codec.encode(codec.prompt_text(request), add_special_tokens=not request.chat)
    with handle.lock:
        handle.request.reset_state()
        try:
            return decode_seq2seq(
                lambda ids: Seq2SeqStep(handle, ids),
                prompt_ids,
                handle.decoder_start_id,
                request,
                codec.decode,
                eos_ids=handle.eos_ids,
                context_length=handle.context_length,
            )
        finally:
            handle.request.reset_state()


class Seq2SeqStep:
    """The first call encodes the prompt and sets the decoder's encoder-side inputs; each call then runs the
    decoder on the given tokens and returns the logits after the last one."""

    def __init__(self, handle: Any, prompt_ids: list[int]) -> None:
        self._handle = handle
        self._prompt = np.asarray([prompt_ids], dtype=np.int64)
        self._held: list[np.ndarray] = []  # arrays the decoder reads in place, alive while it does
        self._ids: np.ndarray | None = None

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        from openvino import Tensor

        decoder = self._handle.request
        if not self._held:
            mask = np.ones_like(self._prompt)
            fixed = {**_cross(self._handle.encoder, self._prompt, mask), "encoder_attention_mask": mask}
            fixed["beam_idx"] = np.zeros(1, dtype=np.int32)
            for name, values in fixed.items():
                self._held.append(values)
                decoder.set_tensor(name, Tensor(values, shared_memory=True))
        self._ids = np.ascontiguousarray(ids)
        decoder.set_tensor("input_ids", Tensor(self._ids, shared_memory=True))
        return decoder.infer(share_outputs=True)["logits"][0, -1]


def _cross(encoder: Any, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Each decoder layer's cross-attention keys/values for ``ids`` (copied out of the encoder's request)."""
    outputs = encoder.infer({"input_ids": ids, "attention_mask": mask})
    return {port.get_any_name(): np.array(values) for port, values in outputs.items()}


def forward(handle: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Decoder logits for every position of every row, float32 [batch, decoder positions, vocab]."""
    from openvino import Tensor

    ids, mask, decoder_ids = seq2seq_arrays(inputs, handle.vocab_size, handle.context_length)
    with handle.lock:
        decoder = handle.request
        decoder.reset_state()
        try:
            feed = {
                **_cross(handle.encoder, ids, mask),
                "input_ids": decoder_ids,
                "encoder_attention_mask": mask,
                "beam_idx": np.arange(ids.shape[0], dtype=np.int32),
            }
            for name, values in feed.items():  # new tensors: those a generation set may be too small to refill
                decoder.set_tensor(name, Tensor(np.ascontiguousarray(values)))
            logits = np.array(decoder.infer()["logits"], dtype=np.float32)
        finally:
            decoder.reset_state()
    if not np.isfinite(logits).all():
        raise InferenceError(f"OpenVINO produced non-finite logits for '{handle.directory.name}'")
    return {"logits": logits}
