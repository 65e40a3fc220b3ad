"""Where a model comes from: a configured directory, ``models/{name}``, a local path, or the hub."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muai_core import locations
from muai_core.config import MuaiConfig
from muai_core.errors import ModelLoadError

log = logging.getLogger(__name__)

#: A Hugging Face hub id: ``name`` or ``org/name``.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: ``source`` is a local directory when ``is_local``, else a hub id.

    ``models_dir`` is the models directory the model is filed under: where it was found, else where
    ``muai pull`` would put it. Derived files (exports) go beside it. ``searched`` lists the models
    directories the name was looked up in.
    """

    name: str
    source: str
    is_local: bool
    paths: Mapping[str, Any] = field(default_factory=dict)
    models_dir: str = "models"
    searched: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """Whether the model has local files: a directory that exists."""
        return self.is_local and Path(self.source).is_dir()


def resolve_model(name: object, config: MuaiConfig) -> ModelSource:
    """Map a model name to its source, in the order: config ``models:``, models dirs, local path, hub."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise ModelLoadError(f"model name must be non-empty text, got {name!r}")
    paths = config.models.get(name, {})
    home = str(home_models_dir(config))
    if "pytorch_path" in paths:
        return ModelSource(name, str(locations.resolve(paths["pytorch_path"])), True, paths, home)
    is_name = HUB_ID.match(name) is not None and ".." not in Path(name).parts
    searched = tuple(str(root) for root in models_dirs(config)) if is_name else ()
    for root in map(Path, searched):
        entry = models_dir_entry(name, root)
        if entry is not None:
            return ModelSource(name, str(entry), True, paths, str(root), searched)
    if Path(name).expanduser().is_dir():
        return ModelSource(name, str(Path(name).expanduser()), True, paths, home, searched)
    if is_name:
        return ModelSource(name, name, False, paths, home, searched)
    raise ModelLoadError(
        f"model {name!r} is not a directory and not a valid model name",
        hint=f"use a name under {home}/, a path to an existing directory, or a hub id like org/name",
    )


def models_dirs(config: MuaiConfig) -> tuple[Path, ...]:
    """The folders a model name is looked up in, in order: the project's ``models_dir``, the user's."""
    return tuple(dict.fromkeys((locations.resolve(config.models_dir), locations.user_models_dir())))


def home_models_dir(config: MuaiConfig) -> Path:
    """Where new models go: the configured or project ``models_dir``, else (outside a project) the user's."""
    configured = locations.resolve(config.models_dir)
    if locations.project_root() is not None or Path(config.models_dir).is_absolute() or configured.is_dir():
        return configured
    return locations.user_models_dir()


def models_dir_entry(name: str, root: Path) -> Path | None:
    """``root/name`` if it exists; neither it nor any file in it may lead outside ``root`` through a link."""
    candidate = root / name
    if not candidate.exists():
        return None
    inside = root.resolve()
    escapes = [candidate] if not candidate.resolve().is_relative_to(inside) else []
    escapes += [p for p in candidate.rglob("*") if p.is_symlink() and not p.resolve().is_relative_to(inside)][:1]
    if escapes:
        what = "" if escapes[0] == candidate else f" (its {escapes[0].relative_to(candidate)})"
        raise ModelLoadError(
            f"model {name!r} in {root}/ links outside the models directory{what}",
            hint="copy the files into the models directory instead of linking them",
        )
    return candidate


def check_model_dir(path: Path, name: str, *, allow_pickle: bool = False) -> bool:
    """Refuse a Hugging Face model directory that is missing, incomplete, or holds only pickle weights.

    With ``allow_pickle`` (an explicit opt-in) a pickle-only checkpoint passes, with a warning.
    :return: True when the weights are pickle, not safetensors.
    """
    if not path.is_dir():
        raise ModelLoadError(f"model directory for '{name}' not found: {path}", hint=f"run `muai pull {name}`")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json, so it is not a Hugging Face model directory")
    if any(path.glob("*.safetensors")):
        return False
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickled and allow_pickle:
        log.warning("muai: loading pickle checkpoint(s) %s of '%s' because allow_pickle is on", pickled, name)
        return True
    found = f" (found pickle checkpoint(s): {', '.join(pickled)})" if pickled else ""
    raise ModelLoadError(
        f"{path} has no .safetensors weights{found}; muai loads safetensors only, never pickle",
        hint="convert the checkpoint once with transformers' save_pretrained(..., safe_serialization=True)"
        + (", or opt in with backend.pytorch.allow_pickle: true if you trust its source" if pickled else ""),
    )


def json_object(path: Path, *, hint: str) -> dict[str, Any]:
    """The JSON object in ``path`` ({} when there is no such file); ``ModelLoadError`` naming the file otherwise."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", hint=hint) from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} holds a JSON {type(data).__name__}, not an object", hint=hint)
    return data


def directory_eos_ids(directory: Path, config: Mapping[str, Any], name: str, *, hint: str) -> frozenset[int]:
    """The end-of-sequence ids transformers uses: generation_config.json's ``eos_token_id``, else config.json's."""
    generation = json_object(directory / "generation_config.json", hint=hint)
    return frozenset(eos_token_ids(generation.get("eos_token_id", config.get("eos_token_id")), name))


def eos_token_ids(value: object, name: str) -> tuple[int, ...]:
    """A model's ``eos_token_id`` (None, an id or a list of ids) as a tuple of ids; anything else is refused."""
    ids = [] if value is None else value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ModelLoadError(
            f"the eos_token_id of '{name}' must be a token id or a list of them, got {value!r}",
            hint="fix eos_token_id in generation_config.json or config.json, or re-download the model",
        )
    return tuple(ids)


#: config.json's names for a transformer's depth and width, as transformers' configs spell them.
LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
WIDTH_FIELDS = ("hidden_size", "n_embd", "d_model")
#: A config may describe this many times the parameters its weights hold (packed 4-bit weights store 8 per element).
SIZE_SLACK = 16
MAX_SAFETENSORS_HEADER = 100 * 2**20


def check_config_size(directory: Path, config: Mapping[str, Any], name: str) -> None:
    """Refuse a config.json that describes a model far larger than the safetensors weights beside it.

    Backends build the architecture from config.json before they read the weights, so a config claiming 10^9
    layers would allocate memory until the OOM killer stops the process. Every transformer layer holds at least
    its query and output projections (2 x width^2), and the embeddings vocab x width: that lower bound must not
    exceed ``SIZE_SLACK`` times the weights' element count. Directories without readable headers pass (the
    loader reports those).
    """
    section = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    fields = dict(_field(names, config, section) for names in (LAYER_FIELDS, WIDTH_FIELDS, ("vocab_size",)))
    stored = stored_parameters(directory)
    if stored is None or None in fields:
        return
    layers, width, vocab = fields.values()
    implied = width * (vocab + 2 * layers * width)
    if implied > SIZE_SLACK * stored:
        described = ", ".join(f"{key}={value}" for key, value in fields.items())
        raise ModelLoadError(
            f"config.json of '{name}' describes a model of at least {implied:,} parameters ({described}), "
            f"but its weights hold {stored:,}",
            hint=f"config.json does not belong to these weights: restore it, or download the model again "
            f"(muai pull {name})",
        )


def stored_parameters(directory: Path) -> int | None:
    """How many numbers the ``*.safetensors`` files in ``directory`` hold, read from their headers; None if unknown."""
    total = 0
    files = sorted(directory.glob("*.safetensors"))
    try:
        for file in files:
            with file.open("rb") as stream:
                size = int.from_bytes(stream.read(8), "little")
                if size > MAX_SAFETENSORS_HEADER:
                    return None
                header = json.loads(stream.read(size))
            for key, entry in header.items():
                if key != "__metadata__":
                    total += math.prod(int(n) for n in entry["shape"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return total if files else None


def _field(names: tuple[str, ...], *sections: Mapping[str, Any]) -> tuple[str | None, int]:
    """The first of ``names`` that holds a count in one of ``sections``: (name, count), else (None, 0)."""
    for key in names:
        for section in sections:
            count = _count(section.get(key))
            if count is not None:
                return key, count
    return None, 0


def _count(value: Any) -> int | None:
    """A positive whole number from config.json (``1e9`` included), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
        return None
    return int(value)
