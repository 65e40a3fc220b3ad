"""The muai hooks of the ``template`` backend. Parts marked ENGINE are where your runtime goes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muai_core import chat_template, hookimpl
from muai_core.availability import modules_import
from muai_core.config import reject_unknown_keys
from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_core.decoding import decode_loop
from muai_core.inputs import token_arrays
from muai_core.model_source import json_object
from muai_core.seq2seq import refuse_encoder_decoder

NAME = "template"
SETTINGS = ("enable_fallback", "device")  # the keys your backend.<name> section accepts
VOCAB = 256  # ENGINE: a byte-level stand-in vocabulary
CONTEXT = 2048


@dataclass(eq=False)
class TemplateModel:
    """The handle the core passes back to every hook. ENGINE: hold your runtime's model here."""

    name: str
    device: str
    weights: np.ndarray | None


class TemplateBackend:
    @hookimpl
    def muai_backend_available(self) -> Availability:
        # ENGINE: the modules your runtime needs; available means they import (once per process).
        return modules_import(("numpy",), "pip install muai-template")

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> TemplateModel:
        request.require_model_type(("transformers",), NAME)
        self.muai_check_settings(request.settings)
        if request.is_local:  # ENGINE: a backend without encoder-decoder (T5, BART) support hands those on
            config = json_object(Path(request.source) / "config.json", hint="re-download the model")
            refuse_encoder_decoder(config, request.model_name, NAME)
        # ENGINE: load request.source (check it with muai_core.model_source.check_model_dir); raise
        # ModelLoadError with a hint when it cannot be loaded. The stand-in "weights" favour repeating a byte,
        # then the byte two above it.
        weights = np.eye(VOCAB, dtype=np.float32) * 10 + np.eye(VOCAB, k=2, dtype=np.float32) * 5
        return TemplateModel(request.model_name, "cpu", weights)

    @hookimpl
    def muai_check_settings(self, settings: Mapping[str, Any]) -> None:
        # ENGINE: validate the rest of your section; muai doctor calls this without loading a model.
        reject_unknown_keys(settings, SETTINGS, f"backend.{NAME}")

    @hookimpl
    def muai_forward(self, model: TemplateModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        ids, _ = token_arrays(inputs, VOCAB, CONTEXT)  # refuses sequences longer than the context
        return {"logits": model.weights[ids]}  # ENGINE: your forward pass, float32 [batch, seq, vocab]

    @hookimpl
    def muai_generate(self, model: TemplateModel, request: GenerationRequest) -> GenerationResult:
        weights = model.weights

        def step(ids: np.ndarray) -> np.ndarray:
            # ENGINE: feed ``ids`` (the prompt, then one token at a time) and return the last position's logits.
            return weights[ids[0, -1]]

        # ENGINE: an engine that runs its own generation loop (it samples and yields token ids itself) uses
        # muai_core.decoding.token_loop(engine, prompt_ids, request, _decode, ...) instead, where
        # engine(ids, budget) yields the new ids after ``ids``; see docs/writing-a-backend.md.
        # ENGINE: your tokenizer and the model's chat template (muai_core.text_codec.TextCodec.prompt_text);
        # this stand-in has no template, so it refuses chat and messages with InvalidInputError.
        prompt_ids = list(chat_template.prompt_text(request, None, {}).encode("utf-8"))
        return decode_loop(step, prompt_ids, request, _decode, context_length=CONTEXT)

    @hookimpl
    def muai_unload_model(self, model: TemplateModel) -> None:
        model.weights = None  # ENGINE: free your runtime's memory

    @hookimpl
    def muai_model_info(self, model: TemplateModel) -> dict[str, Any]:
        return {
            "backend": NAME,
            "device": model.device,
            "vocab_size": VOCAB,
            "context_length": CONTEXT,
            "memory_bytes": model.weights.nbytes if model.weights is not None else 0,  # lets max_cache_bytes count it
            # ENGINE: equal on two backends exactly when they read token ids the same way; it lets a generation
            # that fails on one resume on the other (muai_core.text.vocab_digest of your tokenizer's vocabulary).
            "tokenizer_digest": "utf-8 bytes",
        }


def _decode(ids: Sequence[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")
