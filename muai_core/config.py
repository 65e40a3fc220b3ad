"""The YAML configuration (seed schema): load, validate, and answer questions about it.

Policy: a missing file means defaults; a file that is present but invalid raises
``ConfigurationError`` naming the key, the bad value and what is allowed. Nothing is silently
replaced. Backend sections other than the keys below are passed to their plugin, which validates
its own settings (third-party plugins may add sections).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from muai_core.errors import ConfigurationError

CONFIG_ENV = "MUAI_CONFIG"
DEFAULT_CONFIG_PATH = "config/system.yaml"
DEFAULT_BACKEND = "pytorch"

TOP_LEVEL_KEYS = ("backend", "max_cache_bytes", "model_overrides", "models", "models_dir")
SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
#: Keys of ``backend:`` that are not backend sections.
BACKEND_KEYS = ("default", "priority")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class MuaiConfig:
    """A validated configuration. ``priority`` is the fallback order after the chosen backend."""

    default_backend: str = DEFAULT_BACKEND
    priority: tuple[str, ...] = (DEFAULT_BACKEND,)
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    models: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    models_dir: str = "models"
    max_cache_bytes: int | None = None
    source: str | None = None

    def backend_settings(self, backend: str) -> Mapping[str, Any]:
        return self.backends.get(backend, MappingProxyType({}))

    def fallback_enabled(self, backend: str) -> bool:
        return bool(self.backend_settings(backend).get("enable_fallback", True))

    def backend_names(self) -> set[str]:
        """Every backend name the config mentions."""
        names = {self.default_backend, *self.priority, *self.backends}
        for chain in self.model_overrides.values():
            names.update(chain)
        return names


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> MuaiConfig:
    """Read and validate the YAML file; a missing file gives the defaults."""
    file = config_path(path)
    if not file.exists():
        return MuaiConfig()
    if not file.is_file():
        raise ConfigurationError(f"config path {file} is not a file", hint=f"point {CONFIG_ENV} at a YAML file")
    try:
        text = file.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read config {file}: {exc}", hint="fix the YAML syntax") from exc
    return parse_config(data, source=str(file))


def parse_config(data: Any, *, source: str | None = None) -> MuaiConfig:
    """Validate already-parsed YAML content."""
    where = f" in {source}" if source else ""
    if data is None:
        return MuaiConfig(source=source)
    root = _mapping(data, "the top level", where)
    reject_unknown_keys(root, TOP_LEVEL_KEYS, "the top level", where)

    backend = _mapping(root.get("backend", {}), "backend", where)
    default = _name(backend.get("default", DEFAULT_BACKEND), "backend.default", where)
    priority = _names(backend.get("priority", [DEFAULT_BACKEND]), "backend.priority", where)
    sections = {}
    for name, section in backend.items():
        if name in BACKEND_KEYS:
            continue
        key = f"backend.{name}"
        _name(name, f"a backend section name ({key})", where)
        sections[name] = MappingProxyType(_section(section, key, where))

    overrides = {}
    for model, choice in _mapping(root.get("model_overrides", {}), "model_overrides", where).items():
        key = f"model_overrides.{model}"
        overrides[str(model)] = (_name(choice, key, where),) if isinstance(choice, str) else _names(choice, key, where)

    models = {}
    for model, entry in _mapping(root.get("models", {}), "models", where).items():
        key = f"models.{model}"
        entry = _mapping(entry, key, where)
        for path_key, value in entry.items():
            if not str(path_key).endswith("_path") or not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"{key}.{path_key}{where} must be a '<backend>_path: directory' entry, got {value!r}",
                    hint="e.g. pytorch_path: models/gpt2 and openvino_path: models/openvino/gpt2",
                )
        models[str(model)] = MappingProxyType(dict(entry))

    models_dir = root.get("models_dir", "models")
    if not isinstance(models_dir, str) or not models_dir:
        raise ConfigurationError(f"models_dir{where} must be a directory path, got {models_dir!r}")

    max_bytes = root.get("max_cache_bytes")
    return MuaiConfig(
        max_cache_bytes=None if max_bytes is None else parse_size(max_bytes, f"max_cache_bytes{where}"),
        default_backend=default,
        priority=priority,
        backends=MappingProxyType(sections),
        model_overrides=MappingProxyType(overrides),
        models=MappingProxyType(models),
        models_dir=models_dir,
        source=source,
    )


def _mapping(value: Any, key: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{key}{where} must be a mapping, got {type(value).__name__} {_short(value)}",
            hint="see the configuration reference in README.md",
        )
    for k in value:
        if not isinstance(k, str):
            raise ConfigurationError(f"{key}{where} has a non-text key {k!r}", hint="quote the key")
    return dict(value)


def parse_size(value: Any, key: str) -> int:
    """A positive byte count: an int, or text such as ``"512MiB"`` or ``"1.5 GB"``."""
    match = SIZE_PATTERN.match(value) if isinstance(value, str) else None
    if match and match.group(2).lower() in SIZE_UNITS:
        size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        size = 0
    if size < 1:
        raise ConfigurationError(
            f"{key} must be a positive size in bytes, got {_short(value)}",
            hint='e.g. 2147483648, "2GiB" or "1500MB" (units: B, KB, MB, GB, KiB, MiB, GiB)',
        )
    return size


def reject_unknown_keys(mapping: Mapping[str, Any], allowed: tuple[str, ...], key: str, where: str = "") -> None:
    """Raise ``ConfigurationError`` naming keys of ``mapping`` outside ``allowed`` (backend plugins use it too)."""
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {', '.join(map(str, unknown))} at {key}{where}",
            hint=f"allowed keys are: {', '.join(allowed)}",
        )


def _name(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ConfigurationError(
            f"{key}{where} must be a backend name, got {_short(value)}",
            hint="use a name such as 'pytorch' or 'openvino'",
        )
    return value


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigurationError(
            f"{key}{where} must be a non-empty list of backend names, got {_short(value)}",
            hint="e.g. [openvino, pytorch]",
        )
    names = tuple(_name(item, f"{key}[{i}]", where) for i, item in enumerate(value))
    return tuple(dict.fromkeys(names))


def _section(value: Any, key: str, where: str) -> dict[str, Any]:
    section = _mapping(value, key, where)
    if "enable_fallback" in section and not isinstance(section["enable_fallback"], bool):
        raise ConfigurationError(
            f"{key}.enable_fallback{where} must be true or false, got {_short(section['enable_fallback'])}"
        )
    if "device" in section and (not isinstance(section["device"], str) or not section["device"]):
        raise ConfigurationError(f"{key}.device{where} must be a device name, got {_short(section['device'])}")
    return section


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
