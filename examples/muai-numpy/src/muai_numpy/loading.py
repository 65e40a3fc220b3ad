"""Loading a Hugging Face model directory into a NumPy network and a tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muai_core.config import reject_unknown_keys
from muai_core.contracts import LoadRequest
from muai_core.errors import ModelLoadError
from muai_core.model_source import check_config_size, check_model_dir, directory_eos_ids, json_object
from muai_core.seq2seq import refuse_encoder_decoder
from muai_core.text_codec import TextCodec
from muai_numpy.architectures import ARCHITECTURES, HINT, Network
from muai_numpy.safetensors_file import read_tensors

NAME = "numpy"
SETTINGS = ("enable_fallback", "device")
REDOWNLOAD = "re-download the model"
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
    check_settings(request.settings)
    if not request.is_local:
        raise ModelLoadError(
            f"muai-numpy loads local model directories, and '{request.model_name}' is not one",
            hint=f"put the model in models/{request.model_name}, e.g. with `muai pull {request.model_name}`",
        )
    if request.device.lower() != "cpu":
        log.warning("muai-numpy runs on the CPU; device %r ignored", request.device)
    path = Path(request.source)
    check_model_dir(path, request.model_name)
    config = json_object(path / "config.json", hint=REDOWNLOAD)
    refuse_encoder_decoder(config, request.model_name, NAME)  # the next backend in the chain gets it
    architecture = config.get("model_type")
    if architecture not in ARCHITECTURES:
        raise ModelLoadError(f"'{request.model_name}' is a {architecture!r} model", hint=HINT)
    check_config_size(path, config, request.model_name)
    tensors: dict[str, Any] = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors.update(read_tensors(file))
    try:
        network = ARCHITECTURES[architecture](config, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"config.json of '{request.model_name}' is incomplete or wrong: {exc!r}") from exc
    codec = TextCodec(path, hint="the model directory needs tokenizer.json and tokenizer_config.json")
    eos_ids = directory_eos_ids(path, config, request.model_name, hint=REDOWNLOAD)
    return NumpyModel(network, codec, eos_ids, architecture, str(path))


def check_settings(section: Mapping[str, Any]) -> None:
    """Validate ``backend.numpy``: the core checks both keys it accepts."""
    reject_unknown_keys(section, SETTINGS, f"backend.{NAME}")


def parameters(model: NumpyModel) -> int:
    return sum(t.size for t in model.network.tensors.values()) if model.network is not None else 0
