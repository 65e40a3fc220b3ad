"""The muai hooks of the ``numpy`` backend (made from plugins/_template)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from muai_core import hookimpl
from muai_core.availability import modules_import
from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_core.decoding import decode_loop
from muai_core.inputs import token_arrays
from muai_numpy.loading import NAME, NumpyModel, check_settings, load, parameters


class NumpyBackend:
    @hookimpl
    def muai_backend_available(self) -> Availability:
        return modules_import(("numpy", "tokenizers", "jinja2"), "pip install muai-numpy")

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> NumpyModel:
        return load(request)

    @hookimpl
    def muai_check_settings(self, settings: Mapping[str, Any]) -> None:
        check_settings(settings)

    @hookimpl
    def muai_forward(self, model: NumpyModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        network = model.network
        ids, mask = token_arrays(inputs, network.vocab_size, network.context_length)
        return {"logits": network.run(ids, mask, network.new_cache()).astype(np.float32, copy=False)}

    @hookimpl
    def muai_generate(self, model: NumpyModel, request: GenerationRequest) -> GenerationResult:
        network, codec = model.network, model.codec
        cache = network.new_cache()

        def step(ids: np.ndarray) -> np.ndarray:
            mask = np.ones((1, cache.length + ids.shape[1]), dtype=np.int64)
            return network.run(ids, mask, cache)[0, -1]

        prompt_ids = codec.encode(codec.prompt_text(request), add_special_tokens=not request.chat)
        return decode_loop(
            step, prompt_ids, request, codec.decode, eos_ids=model.eos_ids, context_length=network.context_length
        )

    @hookimpl
    def muai_unload_model(self, model: NumpyModel) -> None:
        model.network = None
        model.codec = None

    @hookimpl
    def muai_model_info(self, model: NumpyModel) -> dict[str, Any]:
        return {
            "backend": NAME,
            "device": "cpu",
            "dtype": "float32",
            "architecture": model.architecture,
            "parameters": parameters(model),
            "memory_bytes": parameters(model) * 4,
            "context_length": model.network.context_length if model.network is not None else None,
            "source": model.source,
            "tokenizer_digest": model.codec.digest if model.codec is not None else None,
        }
