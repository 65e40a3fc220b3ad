"""The ``backend.pytorch`` config section, validated."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from muai_core.config import reject_unknown_keys
from muai_core.errors import ConfigurationError

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")
KEYS = ("allow_pickle", "device", "dtype", "enable_fallback")


@dataclass(frozen=True)
class PyTorchSettings:
    device: str
    dtype: str
    allow_pickle: bool = False  # load .bin pickle checkpoints (torch.load with weights_only) when no safetensors


def parse_settings(device: str, section: Mapping[str, Any]) -> PyTorchSettings:
    reject_unknown_keys(section, KEYS, "backend.pytorch")
    dtype = section.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ConfigurationError(
            f"backend.pytorch.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}",
            hint="e.g. dtype: float16 (half the memory of the default float32)",
        )
    allow_pickle = section.get("allow_pickle", False)
    if not isinstance(allow_pickle, bool):
        raise ConfigurationError(
            f"backend.pytorch.allow_pickle must be true or false, got {allow_pickle!r}",
            hint="allow_pickle: true loads .bin pickle checkpoints; leave it out to load safetensors only",
        )
    return PyTorchSettings(device=torch_device(device), dtype=dtype, allow_pickle=allow_pickle)


def check_settings(section: Mapping[str, Any]) -> None:
    """Validate ``backend.pytorch`` as a load would, on the device it names (default: cpu)."""
    parse_settings(str(section.get("device", "cpu")), section)


def torch_device(requested: str) -> str:
    """Normalise a device name; CUDA requested where none exists runs on the CPU, with a warning."""
    import torch

    name = requested.strip().lower()
    if name == "gpu":
        name = "cuda"
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    index = name.partition(":")[2]
    if not name.startswith("cuda") or name not in ("cuda", f"cuda:{index}") or (index and not index.isdigit()):
        raise ConfigurationError(
            f"PyTorch device must be cpu, cuda, cuda:N or auto, got {requested!r}",
            hint="set backend.pytorch.device or ModelManager(device=...)",
        )
    if not torch.cuda.is_available():
        log.warning("muai-pytorch: device %r requested but CUDA is not available; running on the CPU", requested)
        return "cpu"
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigurationError(
            f"{requested!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here",
            hint=f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}, or cuda for the first one",
        )
    return name
