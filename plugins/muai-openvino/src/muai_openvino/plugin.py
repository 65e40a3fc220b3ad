"""The muai hook implementations of the ``openvino`` backend."""

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
from muai_core.errors import ModelLoadError
from muai_openvino import commands, generation, runtime
from muai_openvino.export_layout import check_quality_bar, export_quality
from muai_openvino.paged import paged_stats
from muai_openvino.settings import check_settings

REQUIRED_MODULES = ("openvino", "tokenizers", "jinja2")


class OpenVINOBackend:
    """Runs stateful OpenVINO IR exported by ``muai export``. openvino is imported when availability is asked."""

    @hookimpl
    def muai_backend_available(self) -> Availability:
        return modules_import(REQUIRED_MODULES, "pip install muai-openvino")

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> runtime.OpenVINOModel:
        handle = runtime.load(request)
        try:
            check_quality_bar(request, handle.manifest, handle.directory)
        except ModelLoadError:
            runtime.unload(handle)
            raise
        return handle

    @hookimpl
    def muai_check_settings(self, settings: Mapping[str, Any]) -> None:
        check_settings(settings)

    @hookimpl
    def muai_forward(self, model: runtime.OpenVINOModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return generation.forward(model, inputs)

    @hookimpl
    def muai_generate(self, model: runtime.OpenVINOModel, request: GenerationRequest) -> GenerationResult:
        return generation.generate(model, request)

    @hookimpl
    def muai_decode_step(
        self, model: runtime.OpenVINOModel, longest: int, cancel: threading.Event | None
    ) -> AbstractContextManager[BatchedSequence] | None:
        """A sequence of the paged graph's batcher (it rolls back). None on the stateful graph: its KV cache lives
        inside OpenVINO and rolling back means feeding the whole history again, which costs more than a draft
        saves; and none for an encoder-decoder export."""
        return None if model.encoder is not None or model.batcher is None else model.batcher.sequence(longest, cancel)

    @hookimpl
    def muai_unload_model(self, model: runtime.OpenVINOModel) -> None:
        runtime.unload(model)

    @hookimpl
    def muai_model_info(self, model: runtime.OpenVINOModel) -> dict[str, Any]:
        return {
            "backend": "openvino",
            "device": ",".join(model.execution_devices) or model.requested_device,
            "requested_device": model.requested_device,
            "precision": model.manifest.get("precision"),
            "inference_precision": model.properties.get("INFERENCE_PRECISION_HINT", "f32"),
            "stateful": bool(model.manifest.get("stateful")),
            "quality": export_quality(model.manifest),
            "attention": "stateful" if model.paged_cache is None else "paged",
            "batching": paged_stats(model),
            "ir_path": str(model.directory),
            "context_length": model.context_length,
            "vocab_size": model.vocab_size,
            "tokenizer_digest": model.codec.digest,
            "memory_bytes": runtime.memory_bytes(model),
            "properties": dict(model.properties),
        }

    @hookimpl
    def muai_diagnostics(self) -> list[str]:
        if not self.muai_backend_available().available:
            return []
        return [f"openvino devices {', '.join(runtime.shared_core().available_devices)}"]

    @hookimpl
    def muai_register_commands(self, subparsers: argparse._SubParsersAction) -> None:
        commands.register(subparsers)
