"""The muai hooks of the ``template`` backend. Parts marked ENGINE are where your runtime goes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

import numpy as np

from muai_core import hookimpl
from muai_core.config import reject_unknown_keys
from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_core.inputs import token_arrays
from muai_core.sampling import next_token
from muai_core.text import TextStream

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
        # ENGINE: check that your runtime is importable, without importing it.
        if find_spec("numpy") is None:
            return Availability(False, "numpy is not installed; pip install muai-template")
        return Availability(True)

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> TemplateModel:
        request.require_model_type(("transformers",), NAME)
        reject_unknown_keys(request.settings, SETTINGS, f"backend.{NAME}")
        # ENGINE: load request.source (check it with muai_core.model_source.check_model_dir); raise
        # ModelLoadError with a hint when it cannot be loaded. The stand-in "weights" favour repeating a byte.
        return TemplateModel(request.model_name, "cpu", np.eye(VOCAB, dtype=np.float32) * 10)

    @hookimpl
    def muai_forward(self, model: TemplateModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        ids, _ = token_arrays(inputs, VOCAB)
        return {"logits": model.weights[ids]}  # ENGINE: your forward pass, float32 [batch, seq, vocab]

    @hookimpl
    def muai_generate(self, model: TemplateModel, request: GenerationRequest) -> GenerationResult:
        prompt = list(request.prompt.encode("utf-8"))  # ENGINE: your tokenizer
        budget = request.new_token_budget(len(prompt), CONTEXT)
        rng = np.random.default_rng(request.seed)
        stream = TextStream(_decode, request.streamer)
        started = time.perf_counter()
        stamps: list[float] = []
        new: list[int] = []
        last = prompt[-1]
        for _ in range(budget):
            last = next_token(model.weights[last], request, rng)  # ENGINE: one decode step
            new.append(last)
            stamps.append(time.perf_counter())
            stream.push(last)
            if stream.stopped:
                break
        stream.finish()
        completion = _decode(new)
        return GenerationResult(
            text=request.prompt + completion if request.return_full_text else completion,
            completion=completion,
            prompt_tokens=len(prompt),
            token_ids=tuple(new),
            finish_reason="stopped" if stream.stopped else "length",
            ttft_s=stamps[0] - started,
            token_latencies_s=tuple(b - a for a, b in zip(stamps, stamps[1:], strict=False)),
        )

    @hookimpl
    def muai_unload_model(self, model: TemplateModel) -> None:
        model.weights = None  # ENGINE: free your runtime's memory

    @hookimpl
    def muai_model_info(self, model: TemplateModel) -> dict[str, Any]:
        return {"backend": NAME, "device": model.device, "vocab_size": VOCAB, "context_length": CONTEXT}


def _decode(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")
