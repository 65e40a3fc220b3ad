"""The muai hook implementations of the ``pytorch`` backend."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from muai_core import hookimpl
from muai_core.availability import modules_import
from muai_core.batching import BatchedSequence
from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_pytorch import commands, generation, loading
from muai_pytorch.pull import BUILTIN
from muai_pytorch.settings import check_settings

REQUIRED_MODULES = ("torch", "transformers", "safetensors")
#: ``dtype`` setting -> the element type muai's model info reports as ``inference_precision``.
INFERENCE_PRECISIONS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


class PyTorchBackend:
    """Runs Hugging Face causal and encoder-decoder LMs with PyTorch; torch is imported when availability is asked
    or a model loads."""

    @hookimpl
    def muai_backend_available(self) -> Availability:
        return modules_import(REQUIRED_MODULES, "pip install muai-pytorch")

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> loading.PyTorchModel:
        return loading.load(request)

    @hookimpl
    def muai_check_settings(self, settings: Mapping[str, Any]) -> None:
        check_settings(settings)

    @hookimpl
    def muai_forward(self, model: loading.PyTorchModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return generation.forward(model, inputs)

    @hookimpl
    def muai_generate(self, model: loading.PyTorchModel, request: GenerationRequest) -> GenerationResult:
        return generation.generate(model, request)

    @hookimpl
    def muai_decode_step(
        self, model: loading.PyTorchModel, longest: int, cancel: threading.Event | None
    ) -> AbstractContextManager[BatchedSequence] | None:
        """A slot of the model's batcher (it rolls back); None for an encoder-decoder model."""
        return None if model.seq2seq else model.batcher.sequence(longest, cancel)

    @hookimpl
    def muai_unload_model(self, model: loading.PyTorchModel) -> None:
        loading.unload(model)

    @hookimpl
    def muai_known_models(self) -> dict[str, str]:
        return {name: f"muai pull {name}" for name in BUILTIN}

    @hookimpl
    def muai_diagnostics(self) -> list[str]:
        if not self.muai_backend_available().available:
            return []
        import torch

        cuda = (
            f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no CUDA"
        )
        return [f"torch devices cpu, {cuda}"]

    @hookimpl
    def muai_register_commands(self, subparsers: argparse._SubParsersAction) -> None:
        commands.register(subparsers)

    @hookimpl
    def muai_model_info(self, model: loading.PyTorchModel) -> dict[str, Any]:
        return {
            "backend": "pytorch",
            "device": model.device,
            "dtype": model.dtype,
            "inference_precision": INFERENCE_PRECISIONS.get(model.dtype, model.dtype),
            "parameters": sum(p.numel() for p in model.model.parameters()) if model.model is not None else 0,
            "memory_bytes": loading.memory_bytes(model),
            "context_length": model.context_length,
            "vocab_size": model.model.config.vocab_size if model.model is not None else None,
            "source": model.source,
            "tokenizer_digest": model.tokenizer_digest,
        }
