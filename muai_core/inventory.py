"""What models are installed: every models directory muai looks in, its model folders and their exports."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from muai_core.config import MuaiConfig
from muai_core.model_source import models_dirs

#: The manifest ``muai export`` writes into each export folder (see docs/design.md, "Export layout").
EXPORT_MANIFEST = "muai-export.json"


@dataclass(frozen=True)
class InstalledModel:
    """A model folder (``config.json`` and weights) and the exports filed under the same models directory."""

    name: str
    directory: Path
    formats: tuple[str, ...]
    size_bytes: int


def installed_models(config: MuaiConfig) -> list[InstalledModel]:
    """Models in each models directory, project first; a name found twice is listed where it is used."""
    found: dict[str, InstalledModel] = {}
    for root in models_dirs(config):
        for model in _models_in(root):
            found.setdefault(model.name, model)
    return sorted(found.values(), key=lambda m: m.name)


def _models_in(root: Path) -> list[InstalledModel]:
    if not root.is_dir():
        return []
    exports: dict[str, list[tuple[str, int]]] = {}
    for manifest in sorted(root.glob(f"*/*/{EXPORT_MANIFEST}")):
        data = _json(manifest)
        name, precision = data.get("name"), data.get("precision")
        if isinstance(name, str) and isinstance(precision, str):
            backend = manifest.parent.parent.name
            exports.setdefault(name, []).append((f"{backend} {precision}", folder_size(manifest.parent)))
    models = []
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file() and not p.is_symlink()):
        weights = "safetensors" if any(folder.glob("*.safetensors")) else "no safetensors"
        derived = exports.get(folder.name, [])
        formats = (weights, *(label for label, _ in derived))
        size = folder_size(folder) + sum(size for _, size in derived)
        models.append(InstalledModel(folder.name, folder, formats, size))
    return models


def model_names(root: Path) -> list[str]:
    """Names of the model folders (holding ``config.json``) directly in ``root``."""
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def close_names(name: str, candidates: Iterable[str]) -> list[str]:
    """The candidates that look like a misspelling of ``name``, closest first (at most three)."""
    return difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.75)


def folder_size(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
