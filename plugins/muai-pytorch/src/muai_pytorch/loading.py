"""Loading a causal LM and its tokenizer safely: safetensors only, no remote code."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muai_core.contracts import LoadRequest
from muai_core.errors import InvalidInputError, ModelLoadError

from muai_pytorch.settings import parse_settings

MODEL_TYPES = ("transformers",)


@dataclass
class PyTorchModel:
    """The handle muai-pytorch hands to the core."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    source: str
    context_length: int | None
    lock: threading.Lock = field(default_factory=threading.Lock)


def load(request: LoadRequest) -> PyTorchModel:
    if request.model_type not in MODEL_TYPES:
        raise InvalidInputError(
            f"muai-pytorch cannot load model_type {request.model_type!r}",
            hint=f"supported model types: {', '.join(MODEL_TYPES)}",
        )
    settings = parse_settings(request.device, request.settings)
    if request.is_local:
        check_local_dir(Path(request.source), request.model_name)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(request.source, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            request.source,
            dtype=getattr(torch, settings.dtype),
            use_safetensors=True,
            trust_remote_code=False,
        )
    except OSError as exc:
        raise ModelLoadError(
            f"cannot load '{request.model_name}' from {_where(request)}: {exc}",
            hint=_hub_hint(request) if not request.is_local else "check that the directory holds a complete model",
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"'{request.model_name}' is not a causal language model transformers can load: {type(exc).__name__}: {exc}",
            hint="muai-pytorch loads AutoModelForCausalLM checkpoints",
        ) from exc
    model.to(settings.device).eval()
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return PyTorchModel(model, tokenizer, settings.device, settings.dtype, request.source, context)


def check_local_dir(path: Path, name: str) -> None:
    """Refuse a directory that is missing, incomplete, or holds only pickle weights."""
    if not path.is_dir():
        raise ModelLoadError(f"model directory for '{name}' not found: {path}", hint=f"run `muai pull {name}`")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json, so it is not a Hugging Face model directory")
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (found pickle checkpoint(s): {', '.join(pickled)})" if pickled else ""
        raise ModelLoadError(
            f"{path} has no .safetensors weights{found}; muai loads safetensors only, never pickle",
            hint="convert the checkpoint once with transformers' save_pretrained(..., safe_serialization=True)",
        )


def unload(handle: PyTorchModel) -> None:
    import torch

    handle.model = None
    handle.tokenizer = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _where(request: LoadRequest) -> str:
    return request.source if request.is_local else f"the Hugging Face hub ({request.source})"


def _hub_hint(request: LoadRequest) -> str:
    return (
        f"the hub is unreachable or has no such model; put a local copy in models/{request.model_name} "
        f"(e.g. `muai pull {request.model_name}` where the hub is reachable, or from a local directory)"
    )
