"""Where an exported model lives, and the check that its files are there before loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from muai_core.contracts import LoadRequest
from muai_core.errors import ModelLoadError

XML = "openvino_model.xml"
BIN = "openvino_model.bin"
MANIFEST = "muai-export.json"
TOKENIZER = "tokenizer.json"
REQUIRED = (XML, BIN, TOKENIZER, "config.json", MANIFEST)


def ir_dir(request: LoadRequest, cache_dir: str, precision: str) -> Path:
    """``models.<name>.openvino_path`` from the config, else ``{cache_dir}/{name}`` (FP32) or ``{name}-int8``."""
    configured = request.paths.get("openvino_path")
    if configured:
        return Path(configured)
    return Path(cache_dir) / ir_dir_name(model_label(request.model_name, request.source, request.is_local), precision)


def ir_dir_name(label: str, precision: str) -> str:
    return label if precision == "FP32" else f"{label}-{precision.lower()}"


def model_label(model_name: str, source: str, is_local: bool) -> str:
    """The name an export is filed under: a model given as a directory path is filed by its last part."""
    return Path(model_name).name if is_local and source == model_name else model_name


def export_command(name: str, precision: str = "FP32") -> str:
    flags = f"{name} --precision {precision}"
    return f"muai export {flags}  (or: python scripts/export_to_openvino.py {flags})"


def check_ir_dir(directory: Path, name: str, precision: str = "FP32") -> dict[str, Any]:
    """Every required file must exist and the manifest must parse; returns the manifest."""
    command = export_command(name, precision)
    for file in REQUIRED:
        if not (directory / file).is_file():
            raise ModelLoadError(
                f"OpenVINO model file not found: {directory / file}", hint=f"export it first: {command}"
            )
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory / MANIFEST} is unreadable: {exc}", hint=f"export again: {command}") from exc
    if not isinstance(manifest, dict) or not manifest.get("stateful"):
        raise ModelLoadError(f"{directory} does not hold a stateful muai export", hint=f"export again: {command}")
    return manifest
