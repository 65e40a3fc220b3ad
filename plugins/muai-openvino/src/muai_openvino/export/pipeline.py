"""``muai export``: source model -> ``{cache_dir}/{name}`` holding the IR, tokenizer files and a manifest.

Everything is written to a staging directory beside the target and swapped into place once the
export has been validated, so a failure never leaves a half-written directory behind; one export of
a target runs at a time (a second waits for the first). The manifest records each written file's size
and SHA-256, so a damaged or missing file makes the export out of date.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from muai_core.config import MuaiConfig
from muai_core.errors import ConfigurationError, ModelLoadError
from muai_core.inventory import close_names, installed_models
from muai_core.model_source import check_model_dir, resolve_model
from muai_core.plugins import default_registry
from muai_core.progress import Progress
from muai_core.quality import Harness, summary
from muai_core.staging import staged_directory, target_lock
from muai_openvino.export.compress import Compression, compress
from muai_openvino.export_layout import (
    DECODER_XML,
    ENCODER_XML,
    MANIFEST,
    XML,
    ir_dir_name,
    model_label,
    required_files,
)
from muai_openvino.settings import PRECISIONS, exports_root

#: Files copied from the source model next to the IR (the tokenizer travels with the model).
COPIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "chat_template.jinja")  # fmt: skip
STEPS = 5
WRITABLE = "pass a folder you can write to with --cache-dir, or set backend.openvino.cache_dir in the config"


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    manifest: dict[str, Any]
    skipped: bool


@dataclass(frozen=True)
class Location:
    """Where a model's exports come from and go: its directory, the exports root, its label and digest."""

    source_dir: Path
    root: Path
    label: str
    digest: str


@dataclass
class Source:
    """The source model loaded once, traced once, for every precision an export writes or tries."""

    directory: Path
    model: Any
    tokenizer: Any
    #: The reference the export is measured against; None for an encoder-decoder model (one prompt's logits
    #: and greedy tokens are compared instead: the harness runs decoder-only models).
    harness: Harness | None
    #: IR file name -> the traced stateful ``openvino.Model`` (two for an encoder-decoder model).
    ov_models: dict[str, Any]

    @property
    def encoder_decoder(self) -> bool:
        return self.harness is None


def export_model(
    name: str,
    config: MuaiConfig,
    precision: str = "FP32",
    cache_dir: str | None = None,
    *,
    force: bool = False,
    compression: Compression | None = None,
) -> ExportResult:
    """Export model ``name`` (a configured name, ``models/{name}`` or a local directory).

    ``compression`` holds the INT4 options (group size, ...); its precision wins over ``precision``.
    Steps are reported on stderr; the directory is not (``muai export`` prints it once, on stdout).
    """
    precision = (compression.precision if compression else precision).upper()
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    compression = compression or Compression(precision)
    where = locate(name, config, cache_dir)
    target = where.root / ir_dir_name(where.label, precision)
    progress = Progress("muai export", steps=STEPS)
    existing = None if force else _up_to_date(target, where.digest, compression)
    if existing is None:
        waiting = f"another export to {target} is running; waiting for it to finish"
        with target_lock(target, on_wait=lambda: progress.say(waiting), hint=WRITABLE):
            existing = None if force else _up_to_date(target, where.digest, compression)  # a wait may have made it
            if existing is None:
                with staged_directory(target, MANIFEST, hint=WRITABLE) as staging, _library_bars(progress):
                    source = load_source(where.source_dir, progress)
                    manifest = write_export(source, where, compression, staging, progress)
                return ExportResult(target, manifest, skipped=False)
    progress.say(f"{where.label} {precision} is up to date (same source and compression); use --force to export again")
    return ExportResult(target, existing, skipped=True)


def locate(name: str, config: MuaiConfig, cache_dir: str | None) -> Location:
    """The local model ``name`` and the folder its exports go to; our errors when there is none."""
    source = resolve_model(name, config)
    if not source.is_local:
        installed = [model.name for model in installed_models(config)]
        close = close_names(name, [*installed, *default_registry().known_models()])
        guess = f"did you mean {' or '.join(close)}? " if close else ""
        raise ModelLoadError(
            f"no local model '{name}' to export (installed: {', '.join(installed) or 'none'})",
            hint=f"{guess}get it first: muai pull {name} (a built-in name or a hub id), or pass a model directory",
        )
    source_dir = Path(source.source)
    check_model_dir(source_dir, name)
    root = (
        Path(cache_dir)
        if cache_dir
        else exports_root(source.models_dir, config.backend_settings("openvino").get("cache_dir"))
    )
    if os.path.lexists(root) and not root.is_dir():
        raise ConfigurationError(f"the export folder {root} is not a directory", hint=WRITABLE)
    label = model_label(name, source.source, source.is_local)
    return Location(source_dir, root, label, source_digest(source_dir))


def load_source(source_dir: Path, progress: Progress) -> Source:
    from transformers import AutoTokenizer

    from muai_openvino.export.validate import torch_harness

    progress.step(f"loading {source_dir} with PyTorch")
    model, seq2seq = _torch_model(source_dir)
    tokenizer = AutoTokenizer.from_pretrained(source_dir, trust_remote_code=False)
    progress.step("tracing and converting to a stateful OpenVINO model")
    try:
        ov_models = _convert(model, seq2seq)
    except ModelLoadError:
        raise
    except Exception as exc:  # the tracer's and converter's own errors, about this model's code or shapes
        raise ModelLoadError(
            f"OpenVINO could not trace and convert {source_dir}: {' '.join(str(exc).split())[:400]}",
            hint="check that the model runs in PyTorch (muai generate NAME --backend pytorch); this architecture "
            "may not be supported by the exporter",
        ) from exc
    harness = None if seq2seq else torch_harness(model, tokenizer)
    return Source(source_dir, model, tokenizer, harness, ov_models)


def write_export(
    source: Source, where: Location, compression: Compression, staging: Path, progress: Progress
) -> dict[str, Any]:
    """Write the IR at ``compression`` into ``staging`` with its manifest, and measure it against PyTorch."""
    import openvino as ov

    from muai_openvino.export.validate import validate, validate_seq2seq

    precision = compression.precision
    started = time.perf_counter()
    progress.step(f"writing {precision} IR")
    for file, ov_model in source.ov_models.items():
        compressed = compress(ov_model.clone(), compression, source.tokenizer, source.encoder_decoder)
        ov.save_model(compressed, staging / file, compress_to_fp16=precision == "FP16")
    source.tokenizer.save_pretrained(staging)
    for file in COPIED:
        if (source.directory / file).is_file():
            shutil.copy2(source.directory / file, staging / file)
    manifest = {
        "format": 1,
        "name": where.label,
        "source": str(source.directory),
        "source_sha256": where.digest,
        "precision": precision,
        "stateful": True,
        **({"encoder_decoder": True} if source.encoder_decoder else {}),
        "compression": compression.record(),
        "files": file_records(staging, sorted(p.name for p in staging.iterdir() if p.is_file())),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {pkg: _version(pkg) for pkg in ("openvino", "nncf", "torch", "transformers", "muai-openvino")},
    }
    write_manifest(staging, manifest)
    harness = source.harness
    if harness is None:
        progress.step("comparing with PyTorch on one prompt (encoder-decoder)")
        check = validate_seq2seq(staging, where.label, precision, source.model, source.tokenizer)
    else:
        progress.step(f"measuring against PyTorch ({len(harness.prompts)} prompts, {harness.tokens} tokens each)")
        check = validate(staging, where.label, precision, harness)
    manifest["validation"] = check.as_dict()
    manifest["export_seconds"] = round(time.perf_counter() - started, 2)
    write_manifest(staging, manifest)
    size = sum((staging / file).with_suffix(".bin").stat().st_size for file in source.ov_models) / 2**20
    progress.step(f"{precision}: {size:.0f} MiB of weights; against PyTorch: {summary(check.quality)}")
    return manifest


def _torch_model(source_dir: Path) -> tuple[Any, bool]:
    """The source model in float32, and whether it is an encoder-decoder model (exported as two IRs)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    seq2seq = bool(getattr(AutoConfig.from_pretrained(source_dir, trust_remote_code=False), "is_encoder_decoder", 0))
    auto_class, attention = (AutoModelForSeq2SeqLM, "eager") if seq2seq else (AutoModelForCausalLM, "sdpa")
    model = auto_class.from_pretrained(
        source_dir, dtype=torch.float32, attn_implementation=attention, use_safetensors=True, trust_remote_code=False
    )
    return model.eval(), seq2seq


def _convert(model: Any, seq2seq: bool) -> dict[str, Any]:
    """IR file name -> the traced stateful ``openvino.Model``(s)."""
    if seq2seq:
        from muai_openvino.export.seq2seq import convert_seq2seq

        return dict(zip((ENCODER_XML, DECODER_XML), convert_seq2seq(model), strict=True))
    from muai_openvino.export.convert import convert

    return {XML: convert(model)}


def source_digest(directory: Path) -> str:
    """SHA-256 over the config and weight files of a model directory."""
    digest = hashlib.sha256()
    for file in sorted(directory.iterdir()):
        if file.name == "config.json" or file.suffix == ".safetensors":
            digest.update(file.name.encode())
            _feed(digest, file)
    return digest.hexdigest()


def file_records(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of each named file in ``directory`` (a missing file is left out)."""
    records = {}
    for name in names:
        path = directory / name
        if Path(name).name == name and path.is_file():
            records[name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return records


def _up_to_date(directory: Path, digest: str, compression: Compression) -> dict[str, Any] | None:
    """The manifest of an export of this source and compression whose files are all as written, else None."""
    manifest = _manifest(directory)
    files = manifest.get("files")
    if manifest.get("source_sha256") != digest or manifest.get("compression") != compression.record():
        return None
    if not isinstance(files, dict) or not set(required_files(directory)) - {MANIFEST} <= set(files):
        return None
    return manifest if file_records(directory, list(files)) == files else None


def _sha256(path: Path) -> str:
    return _feed(hashlib.sha256(), path).hexdigest()


def _feed(digest: Any, path: Path) -> Any:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def _manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _library_bars(progress: Progress) -> AbstractContextManager[None]:
    """transformers' own bars (tqdm) where ``progress`` draws bars, off where stderr is a log."""
    from muai_pytorch.loading import quiet_progress

    return nullcontext() if progress.bars else quiet_progress()
