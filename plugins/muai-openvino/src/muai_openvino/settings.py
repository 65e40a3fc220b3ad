"""The ``backend.openvino`` config section, validated, and the device choice (with CPU fallback)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muai_core import locations
from muai_core.config import reject_unknown_keys
from muai_core.errors import ConfigurationError, short_repr

log = logging.getLogger(__name__)

KEYS = (
    "device",
    "enable_fallback",
    "cache_dir",
    "compile_cache_dir",
    "num_streams",
    "performance_hint",
    "inference_num_threads",
    "kv_cache_precision",
    "inference_precision",
    "precision",
    "mmap",
    "attention",
    "kv_cache_bytes",
    "max_batch_tokens",
    "max_waiting",
    "prefix_cache",
    "dynamic_quantization_group_size",
)
PRECISIONS = ("FP32", "FP16", "INT8", "INT4")
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
KV_PRECISIONS = ("f32", "f16", "u8")
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
ATTENTIONS = ("paged", "stateful")
DEVICE_PATTERN = re.compile(r"^(CPU|NPU|GPU(\.\d+)?|AUTO(:[A-Z0-9.,]+)?)$")
#: num_streams and inference_num_threads at most: OpenVINO reads both as 32-bit ints (larger values fail inside
#: compile_model) and clamps streams to the cores; 1024 is above any CPU's hardware threads, and a fixed bound keeps
#: a config valid on every machine.
MAX_PARALLELISM = 1024
#: dynamic_quantization_group_size at most (OpenVINO takes any size): wider than any model's hidden size.
MAX_GROUP_SIZE = 1 << 20
#: Exports live in this folder of the models directory the model is filed under, unless cache_dir says otherwise.
EXPORTS_FOLDER = "openvino"


@dataclass(frozen=True)
class OpenVINOSettings:
    device: str
    cache_dir: str | None  # None: {models_dir}/openvino of the model
    compile_cache_dir: str | None
    num_streams: int | str
    performance_hint: str
    inference_num_threads: int
    kv_cache_precision: str | None
    precision: str
    mmap: bool = True  # map the weights file (less memory at FP32) or read it into memory
    attention: str = "paged"  # on CPU: the KV cache in blocks muai passes in (PagedAttention) or in the graph's state
    kv_cache_bytes: int | None = None  # the paged KV cache at most; None: a quarter of the free memory, at most 4 GiB
    max_batch_tokens: int = 512  # tokens in one batched step at most (longer prompts are cut into chunks)
    max_waiting: int = 256  # requests waiting for room in the KV cache at most; one more is refused
    prefix_cache: bool = True  # reuse the KV cache blocks of a prompt prefix already computed
    inference_precision: str | None = None  # None: f32 for an FP32 export, else the device's choice (bf16 on some)
    dynamic_quantization_group_size: int | None = None  # activations of compressed-weight MatMuls; 0: off


def parse_settings(device: str, section: Mapping[str, Any]) -> OpenVINOSettings:
    """Validate ``backend.openvino``; ``device`` is the requested device before availability checks."""
    reject_unknown_keys(section, KEYS, "backend.openvino")
    streams = section.get("num_streams", 1)
    if streams != "AUTO" and not _in_range(streams, 1):
        raise ConfigurationError(
            f"backend.openvino.num_streams must be AUTO or an int from 1 to {MAX_PARALLELISM}, "
            f"got {short_repr(streams)}",
            hint="e.g. num_streams: 1 for one request at a time (the default), or AUTO",
        )
    hint = str(section.get("performance_hint", "LATENCY")).upper()
    if hint not in HINTS:
        raise ConfigurationError(
            f"backend.openvino.performance_hint must be one of {', '.join(HINTS)}, got {hint!r}",
            hint="e.g. performance_hint: LATENCY (the default) for one request at a time",
        )
    threads = section.get("inference_num_threads", 0)
    if not _in_range(threads, 0):
        raise ConfigurationError(
            f"backend.openvino.inference_num_threads must be an int from 0 (OpenVINO's choice) to {MAX_PARALLELISM}, "
            f"got {short_repr(threads)}",
            hint="e.g. inference_num_threads: 4, or 0 to let OpenVINO choose",
        )
    kv = section.get("kv_cache_precision")
    if kv is not None and kv not in KV_PRECISIONS:
        raise ConfigurationError(
            f"backend.openvino.kv_cache_precision must be one of {', '.join(KV_PRECISIONS)}, got {short_repr(kv)}",
            hint="e.g. kv_cache_precision: u8 for the smallest cache; leave it out for the device's default",
        )
    inference = section.get("inference_precision")
    if inference is not None and inference not in INFERENCE_PRECISIONS:
        raise ConfigurationError(
            f"backend.openvino.inference_precision must be one of {', '.join(INFERENCE_PRECISIONS)}, "
            f"got {short_repr(inference)}",
            hint="e.g. inference_precision: f32 for the most exact results; leave it out for the device's choice",
        )
    group = section.get("dynamic_quantization_group_size")
    if group is not None and not _in_range(group, 0, MAX_GROUP_SIZE):
        raise ConfigurationError(
            f"backend.openvino.dynamic_quantization_group_size must be an int from 0 (off) to {MAX_GROUP_SIZE}, "
            f"got {short_repr(group)}",
            hint="e.g. dynamic_quantization_group_size: 0 to turn it off, or 32, 64, 128; leave it out for "
            "OpenVINO's default",
        )
    precision = str(section.get("precision", "FP32")).upper()
    if precision not in PRECISIONS:
        raise ConfigurationError(
            f"backend.openvino.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
            hint="FP32 is the default export; INT4 is the smallest, INT8 the next",
        )
    mmap = section.get("mmap", True)
    if not isinstance(mmap, bool):
        raise ConfigurationError(
            f"backend.openvino.mmap must be true or false, got {mmap!r}",
            hint="mmap: true (the default) maps the weights file; false reads it into memory",
        )
    attention = section.get("attention", "paged")
    if attention not in ATTENTIONS:
        raise ConfigurationError(
            f"backend.openvino.attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}",
            hint="attention: paged (the default) or stateful, the KV cache in the graph's state",
        )
    batching = _batching(section)
    for key in ("cache_dir", "compile_cache_dir"):
        if key in section and (not isinstance(section[key], str) or not section[key]):
            raise ConfigurationError(
                f"backend.openvino.{key} must be a directory path, got {section[key]!r}",
                hint=f"e.g. {key}: models/openvino-cache, or leave it out",
            )
    return OpenVINOSettings(
        device=normalize_device(device),
        cache_dir=section.get("cache_dir"),
        compile_cache_dir=section.get("compile_cache_dir"),
        num_streams=streams,
        performance_hint=hint,
        inference_num_threads=threads,
        kv_cache_precision=kv,
        precision=precision,
        mmap=mmap,
        attention=attention,
        inference_precision=inference,
        dynamic_quantization_group_size=group,
        **batching,
    )


def _batching(section: Mapping[str, Any]) -> dict[str, Any]:
    """The continuous batching keys of ``backend.openvino``, validated."""
    values: dict[str, Any] = {}
    for key, low, high, example in (
        ("max_batch_tokens", 1, 1 << 16, "max_batch_tokens: 512"),
        ("max_waiting", 0, 1 << 20, "max_waiting: 256, or 0 to refuse a request when the cache is full"),
    ):
        value = section.get(key, OpenVINOSettings.__dataclass_fields__[key].default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigurationError(
                f"backend.openvino.{key} must be an int from {low} to {high}, got {short_repr(value)}",
                hint=f"e.g. {example}",
            )
        values[key] = value
    prefix = section.get("prefix_cache", True)
    if not isinstance(prefix, bool):
        raise ConfigurationError(
            f"backend.openvino.prefix_cache must be true or false, got {short_repr(prefix)}",
            hint="prefix_cache: true (the default) reuses the KV cache of a prompt prefix already computed",
        )
    values["prefix_cache"] = prefix
    if "kv_cache_bytes" in section:
        values["kv_cache_bytes"] = parse_bytes(section["kv_cache_bytes"], "backend.openvino.kv_cache_bytes")
    return values


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(value: Any, key: str) -> int:
    """A size in bytes from an int or text such as ``512MB`` or ``2GiB``; at least 64 KiB."""
    match = _SIZE.match(value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif match and match.group(2).upper() in _UNITS:
        size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    else:
        size = -1
    if size < 64 << 10:
        raise ConfigurationError(
            f"{key} must be a size of at least 64KiB (bytes, or text such as 512MB or 2GiB), got {short_repr(value)}",
            hint=f"e.g. {key.rsplit('.', 1)[-1]}: 2GiB",
        )
    return size


def check_settings(section: Mapping[str, Any]) -> None:
    """Validate ``backend.openvino`` as a load would, on the device it names (default: CPU)."""
    parse_settings(str(section.get("device", "cpu")), section)


def _in_range(value: Any, minimum: int, maximum: int = MAX_PARALLELISM) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def writable_cache_dir(path: str) -> str:
    """``compile_cache_dir``, created if missing; a ``ConfigurationError`` naming the key if it cannot be written."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        writable = os.access(directory, os.W_OK | os.X_OK)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    else:
        reason = "" if writable else "not writable"
    if reason:
        raise ConfigurationError(
            f"backend.openvino.compile_cache_dir {path} is not a directory muai can write: {reason}",
            hint="point backend.openvino.compile_cache_dir at a writable directory, or remove it",
        )
    return path


def exports_root(models_dir: str | Path, cache_dir: str | None) -> Path:
    """Where exports live: ``cache_dir`` (relative to the project) when configured, else ``{models_dir}/openvino``."""
    return locations.resolve(cache_dir) if cache_dir else Path(models_dir) / EXPORTS_FOLDER


def normalize_device(device: str) -> str:
    """``cpu`` -> ``CPU``, ``gpu.0`` -> ``GPU.0``; anything that is not an OpenVINO device name is refused."""
    name = str(device).strip().upper()
    if not DEVICE_PATTERN.match(name):
        raise ConfigurationError(
            f"OpenVINO device must be CPU, GPU, GPU.N, NPU or AUTO, got {device!r}",
            hint="set backend.openvino.device",
        )
    return name


def available_device(requested: str, available: Sequence[str]) -> str:
    """The device to compile for: ``requested`` if this machine has it, else CPU with a warning."""
    if requested.startswith("AUTO"):
        return requested
    if requested in available or (requested == "GPU" and any(d.startswith("GPU") for d in available)):
        return requested
    log.warning(
        "OpenVINO device '%s' not available on this system. Available devices: %s. Falling back to CPU.",
        requested,
        ", ".join(available) or "none",
    )
    return "CPU"
