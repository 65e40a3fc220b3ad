"""``muai export``: source model -> ``{cache_dir}/{name}`` holding the IR, tokenizer files and a manifest.

Everything is written to a staging directory beside the target and renamed into place once the
export has been validated, so a failure never leaves a half-written directory behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from muai_core.config import MuaiConfig
from muai_core.errors import ConfigurationError, ModelLoadError
from muai_core.model_source import check_model_dir, resolve_model
from muai_core.staging import staged_directory
from muai_openvino.export.compress import compress_int8
from muai_openvino.files import BIN, MANIFEST, XML, ir_dir_name, model_label
from muai_openvino.settings import DEFAULT_CACHE_DIR, PRECISIONS

#: Files copied from the source model next to the IR (the tokenizer travels with the model).
COPIED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json", "chat_template.jinja")  # fmt: skip
STEPS = 5


@dataclass(frozen=True)
class ExportResult:
    directory: Path
    manifest: dict[str, Any]
    skipped: bool


def export_model(
    name: str,
    config: MuaiConfig,
    precision: str = "FP32",
    cache_dir: str | None = None,
    *,
    force: bool = False,
) -> ExportResult:
    """Export model ``name`` (a configured name, ``models/{name}`` or a local directory)."""
    precision = precision.upper()
    if precision not in PRECISIONS:
        raise ConfigurationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    source = resolve_model(name, config)
    if not source.is_local:
        raise ModelLoadError(f"no local model '{name}' to export", hint=f"get it first: muai pull {name}")
    source_dir = Path(source.source)
    root = Path(cache_dir or config.backend_settings("openvino").get("cache_dir", DEFAULT_CACHE_DIR))
    label = model_label(name, source.source, source.is_local)
    target = root / ir_dir_name(label, precision)
    digest = source_digest(source_dir)
    existing = _manifest(target)
    if not force and existing.get("source_sha256") == digest and existing.get("precision") == precision:
        _say(f"{target} is up to date (same source and precision); use --force to export again")
        return ExportResult(target, existing, skipped=True)

    with staged_directory(target) as staging:
        manifest = _export(source_dir, label, precision, staging, digest)
    _say(f"done: {target}")
    return ExportResult(target, manifest, skipped=False)


def _export(source_dir: Path, name: str, precision: str, staging: Path, digest: str) -> dict[str, Any]:
    import openvino as ov
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from muai_openvino.export.convert import convert
    from muai_openvino.export.validate import validate

    started = time.perf_counter()
    _say(f"[1/{STEPS}] loading {source_dir} with PyTorch")
    check_model_dir(source_dir, name)
    model = AutoModelForCausalLM.from_pretrained(
        source_dir, dtype=torch.float32, attn_implementation="sdpa", use_safetensors=True, trust_remote_code=False
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(source_dir, trust_remote_code=False)
    _say(f"[2/{STEPS}] tracing and converting to a stateful OpenVINO model")
    ov_model = convert(model)
    _say(f"[3/{STEPS}] writing {precision} IR")
    compressed = compress_int8(ov_model) if precision == "INT8" else 0
    ov.save_model(ov_model, staging / XML, compress_to_fp16=precision == "FP16")
    tokenizer.save_pretrained(staging)
    for file in COPIED:
        if (source_dir / file).is_file():
            shutil.copy2(source_dir / file, staging / file)
    manifest = {
        "format": 1,
        "name": name,
        "source": str(source_dir),
        "source_sha256": digest,
        "precision": precision,
        "stateful": True,
        "int8_weights": compressed,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {pkg: _version(pkg) for pkg in ("openvino", "torch", "transformers", "muai-openvino")},
    }
    _write_manifest(staging, manifest)
    _say(f"[4/{STEPS}] validating against PyTorch")
    check = validate(staging, name, precision, model, tokenizer)
    manifest["validation"] = check.as_dict()
    manifest["export_seconds"] = round(time.perf_counter() - started, 2)
    _write_manifest(staging, manifest)
    size = (staging / BIN).stat().st_size / 2**20
    _say(
        f"[5/{STEPS}] {precision}: {size:.0f} MiB of weights, max abs logit diff {check.max_abs_diff:.2e}, "
        f"greedy tokens agree {check.token_agreement:.0%} ({check.tokens_compared} compared)"
    )
    return manifest


def source_digest(directory: Path) -> str:
    """SHA-256 over the config and weight files of a model directory."""
    digest = hashlib.sha256()
    for file in sorted(directory.iterdir()):
        if file.name == "config.json" or file.suffix == ".safetensors":
            digest.update(file.name.encode())
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _manifest(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _say(message: str) -> None:
    print(f"muai export: {message}", file=sys.stderr, flush=True)
