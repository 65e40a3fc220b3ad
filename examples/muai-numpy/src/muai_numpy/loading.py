"""Loading a Hugging Face model directory into a NumPy network and a tokenizer."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muai_core.config import reject_unknown_keys
from muai_core.contracts import LoadRequest
from muai_core.errors import ModelLoadError
from muai_core.model_source import check_model_dir, eos_token_ids
from muai_core.text_codec import TextCodec
from muai_numpy.architectures import ARCHITECTURES, HINT, Network
from muai_numpy.safetensors_file import read_tensors

NAME = "numpy"
SETTINGS = ("enable_fallback", "device")
log = logging.getLogger(__name__)


@dataclass(eq=False)
class NumpyModel:
    """The handle: a stateless network (each request has its own KV cache), so requests run in parallel."""

    network: Network | None
    codec: TextCodec | None
    eos_ids: frozenset[int]
    architecture: str
    source: str


def load(request: LoadRequest) -> NumpyModel:
    request.require_model_type(("transformers",), NAME)
    reject_unknown_keys(request.settings, SETTINGS, f"backend.{NAME}")
    if not request.is_local:
        raise ModelLoadError(
            f"muai-numpy loads local model directories, and '{request.model_name}' is not one",
            hint=f"put the model in models/{request.model_name}, e.g. with `muai pull {request.model_name}`",
        )
    if request.device.lower() != "cpu":
        log.warning("muai-numpy runs on the CPU; device %r ignored", request.device)
    path = Path(request.source)
    check_model_dir(path, request.model_name)
    config = _json(path / "config.json")
    architecture = config.get("model_type")
    if architecture not in ARCHITECTURES:
        raise ModelLoadError(f"'{request.model_name}' is a {architecture!r} model", hint=HINT)
    tensors: dict[str, Any] = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors.update(read_tensors(file))
    try:
        network = ARCHITECTURES[architecture](config, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"config.json of '{request.model_name}' is incomplete or wrong: {exc!r}") from exc
    codec = TextCodec(path, hint="the model directory needs tokenizer.json and tokenizer_config.json")
    return NumpyModel(network, codec, _eos_ids(path, config, request.model_name), architecture, str(path))


def parameters(model: NumpyModel) -> int:
    return sum(t.size for t in model.network.tensors.values()) if model.network is not None else 0


def _eos_ids(path: Path, config: dict[str, Any], name: str) -> frozenset[int]:
    generation = _json(path / "generation_config.json") if (path / "generation_config.json").is_file() else {}
    return frozenset(eos_token_ids(generation.get("eos_token_id", config.get("eos_token_id")), name))


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path.name}: {exc}", hint="re-download the model") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name} holds a {type(data).__name__}, not an object", hint="re-download the model")
    return data
