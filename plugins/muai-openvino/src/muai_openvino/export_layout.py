"""Where an exported model lives, and the check that its files are there before loading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from muai_core.contracts import LoadRequest
from muai_core.errors import ConfigurationError, ModelLoadError
from muai_core.model_source import HUB_ID, json_object
from muai_core.quality import QUALITY_BAR, parse_bar
from muai_core.seq2seq import is_encoder_decoder

XML = "openvino_model.xml"
BIN = "openvino_model.bin"
MANIFEST = "muai-export.json"
TOKENIZER = "tokenizer.json"
REQUIRED = (XML, BIN, TOKENIZER, "config.json", MANIFEST)
#: An encoder-decoder model (config.json says ``is_encoder_decoder``) is exported as two IRs instead of one.
ENCODER_XML, ENCODER_BIN = "openvino_encoder_model.xml", "openvino_encoder_model.bin"
DECODER_XML, DECODER_BIN = "openvino_decoder_model.xml", "openvino_decoder_model.bin"
SEQ2SEQ_REQUIRED = (ENCODER_XML, ENCODER_BIN, DECODER_XML, DECODER_BIN, TOKENIZER, "config.json", MANIFEST)


def required_files(directory: Path) -> tuple[str, ...]:
    """The files an export in ``directory`` needs: ``SEQ2SEQ_REQUIRED`` for an encoder-decoder model (its
    config.json says so, or it holds an encoder or decoder IR file), else ``REQUIRED``."""
    config = json_object(directory / "config.json", hint="export the model again")
    parts = (ENCODER_XML, ENCODER_BIN, DECODER_XML, DECODER_BIN)
    seq2seq = is_encoder_decoder(config) or any((directory / file).is_file() for file in parts)
    return SEQ2SEQ_REQUIRED if seq2seq else REQUIRED


def ir_dir(request: LoadRequest, cache_dir: str, precision: str) -> Path:
    """``models.<name>.openvino_path`` from the config, else ``{cache_dir}/{name}`` (FP32) or e.g. ``{name}-int4``.

    The latter must not lead outside ``cache_dir`` through a link.
    """
    configured = request.paths.get("openvino_path")
    if configured:
        return Path(configured)
    label = model_label(request.model_name, request.source, request.is_local)
    directory = Path(cache_dir) / ir_dir_name(label, precision)
    if os.path.lexists(directory) and not directory.resolve().is_relative_to(Path(cache_dir).resolve()):
        raise ModelLoadError(
            f"the export {directory} links outside {cache_dir}",
            hint=f"move the export into {cache_dir}, or name its folder in the config: "
            f"models.{request.model_name}.openvino_path",
        )
    return directory


def ir_dir_name(label: str, precision: str) -> str:
    return label if precision == "FP32" else f"{label}-{precision.lower()}"


def model_label(model_name: str, source: str, is_local: bool) -> str:
    """The name an export is filed under: a model name as it is, a model given as a directory path under the
    last part of the directory it resolves to (``.`` inside ``models/gpt2`` files as ``gpt2``).

    A label that is not a usable model name (``..``, an absolute path, ...) is a ``ConfigurationError``.
    """
    given_as_path = is_local and Path(source) == Path(model_name).expanduser()
    label = Path(source).resolve().name if given_as_path else model_name
    if not HUB_ID.fullmatch(label):
        raise ConfigurationError(
            f"an export of {model_name!r} would be filed under {label!r}, which is not a usable model name",
            hint="name the model with letters, digits, '.', '_' and '-', starting with a letter or digit "
            "(its key under models: in the config, or its directory's name)",
        )
    return label


def export_command(name: str, precision: str = "FP32") -> str:
    flags = f"{name} --precision {precision}"
    return f"muai export {flags}  (or: python scripts/export_to_openvino.py {flags})"


def check_ir_dir(directory: Path, name: str, precision: str = "FP32") -> dict[str, Any]:
    """Every required file must be there, no file may link outside ``directory``, the manifest must parse,
    and each file must have the size the export recorded; returns the manifest."""
    command = export_command(name, precision)
    for file in required_files(directory):
        if not (directory / file).is_file():
            raise ModelLoadError(
                f"OpenVINO model file not found: {directory / file}", hint=f"export it first: {command}"
            )
    inside = directory.resolve()
    for entry in directory.iterdir():
        if entry.is_symlink() and not entry.resolve().is_relative_to(inside):
            raise ModelLoadError(
                f"{entry} links outside the export {directory}",
                hint=f"replace the link with the file itself, or export again: {command}",
            )
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{directory / MANIFEST} is unreadable: {exc}", hint=f"export again: {command}") from exc
    if not isinstance(manifest, dict) or not manifest.get("stateful"):
        raise ModelLoadError(f"{directory} does not hold a stateful muai export", hint=f"export again: {command}")
    _check_sizes(directory, manifest.get("files"), command)
    return manifest


def _check_sizes(directory: Path, files: object, command: str) -> None:
    """Each file the manifest records (exports before muai recorded files have none) must have its size."""
    if not isinstance(files, dict):
        return
    for entry in directory.iterdir():
        record = files.get(entry.name)
        size = record.get("size") if isinstance(record, dict) else None
        if size is not None and entry.is_file() and entry.stat().st_size != size:
            raise ModelLoadError(
                f"{entry} has {entry.stat().st_size} bytes, the export wrote {size}",
                hint=f"the export is damaged; export again: {command}",
            )


def export_quality(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The figures the export measured against PyTorch (per prompt left out); None for an unmeasured export."""
    validation = manifest.get("validation")
    quality = validation.get("quality") if isinstance(validation, dict) else None
    if not isinstance(quality, dict):
        return None
    return {key: value for key, value in quality.items() if key != "per_prompt"}


def check_quality_bar(request: LoadRequest, manifest: dict[str, Any], directory: Path) -> None:
    """A ``ModelLoadError`` (the resolver then falls back) when the export misses ``models.<name>.quality_bar``."""
    if QUALITY_BAR not in request.paths:
        return
    key = f"models.{request.model_name}.{QUALITY_BAR}"
    bar = parse_bar(request.paths[QUALITY_BAR], key)
    missed = bar.failures(export_quality(manifest) or {})
    if missed:
        precision = manifest.get("precision", "?")
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in bar.record().items())
        raise ModelLoadError(
            f"the {precision} export of '{request.model_name}' in {directory} misses {key}: {'; '.join(missed)}",
            hint=f"export the cheapest precision that meets it: muai export {request.model_name} --auto {flags} "
            f"(and set backend.openvino.precision to the one it keeps), or lower the bar",
        )
