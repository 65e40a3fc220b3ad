"""The YAML configuration (the schema in docs/design.md): load, validate, and answer questions about it.

Policy: a missing file means defaults; a file that is present but invalid raises
``ConfigurationError`` naming the key, the bad value and what is allowed. Nothing is silently
replaced. Backend sections other than the keys below are passed to their plugin, which validates
its own settings (third-party plugins may add sections).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from muai_core import locations
from muai_core.errors import ConfigurationError, short_repr
from muai_core.quality import QUALITY_BAR, parse_bar

CONFIG_ENV = "MUAI_CONFIG"
DEFAULT_CONFIG_PATH = "config/system.yaml"
DEFAULT_BACKEND = "pytorch"

TOP_LEVEL_KEYS = ("backend", "max_cache_bytes", "model_overrides", "models", "models_dir", "serve")
SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
#: Keys of ``backend:`` that are not backend sections.
BACKEND_KEYS = ("default", "priority")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Limits on a YAML document: nesting, and its size with every alias expanded (a scalar counts its length).
MAX_DEPTH = 32
MAX_EXPANDED_SIZE = 1_000_000
#: Integers and size numbers longer than this are refused before they are converted.
MAX_DIGITS = 30
#: No machine has more memory than this; a larger cache bound is a typo.
MAX_SIZE = 2**63


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
    #: The ``serve:`` section, checked by ``muai_core.serving.settings`` when a server starts.
    serve: Mapping[str, Any] = field(default_factory=dict)
    #: ``models.<name>.prompt_lookup``: the model's default for the generation argument of that name.
    prompt_lookup: Mapping[str, int] = field(default_factory=dict)
    #: ``models.<name>.draft`` and ``models.<name>.draft_tokens``: the model's defaults for those generation arguments.
    drafts: Mapping[str, str] = field(default_factory=dict)
    draft_tokens: Mapping[str, int] = field(default_factory=dict)

    def backend_settings(self, backend: str) -> Mapping[str, Any]:
        return self.backends.get(backend, MappingProxyType({}))


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$MUAI_CONFIG``, else ``config/system.yaml`` of the project around the working directory."""
    chosen = path or os.environ.get(CONFIG_ENV)
    return Path(chosen) if chosen else locations.base_dir() / DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str] | None = None) -> MuaiConfig:
    """Read and validate the YAML file; a missing file gives the defaults."""
    file = config_path(path)
    if not file.exists():
        return MuaiConfig()
    if not file.is_file():
        raise ConfigurationError(f"config path {file} is not a file", hint=f"point {CONFIG_ENV} at a YAML file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read config {file}: {exc}", hint="make it readable UTF-8 text") from exc
    try:
        data = _BoundedLoader(text, str(file)).get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"cannot read config {file}: {_yaml_problem(exc, text)}",
            hint="fix the YAML there: indent with spaces, and quote a value holding ': ' or starting with [ { * & ! |",
        ) from exc
    return parse_config(data, source=str(file))


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line: where PyYAML found the problem (1-based), what it is, and what it was reading."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow: a position, no mark
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before.rpartition("\n")[2]) + 1
        return f"line {line}, column {column}: character #x{exc.character:04x}: {exc.reason}"
    mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    start = getattr(exc, "context_mark", None)
    if context and start:
        context += f" from line {start.line + 1}, column {start.column + 1}"
    return f"{where}{problem}" + (f" ({context})" if context else "")


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses deep nesting, aliases that expand past ``MAX_EXPANDED_SIZE`` ("billion
    laughs") and huge integers, naming the key, before any of it is built into Python objects."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self.path: list[str] = []
        self.sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if isinstance(index, yaml.ScalarNode):
            self.path.append(str(index.value)[:40])
        elif isinstance(index, int):
            self.path.append(f"[{index}]")
        else:
            self.path.append("")  # a key, or the document itself
        try:
            if len(self.path) > MAX_DEPTH:
                self.fail(f"nests deeper than {MAX_DEPTH} levels", "flatten the structure")
            alias = self.check_event(yaml.AliasEvent)
            node = super().compose_node(parent, index)
            if not alias:
                self.sizes[id(node)] = self.size(node)
            elif id(node) not in self.sizes:
                self.fail("has an alias inside its own anchor", "remove the self-reference")
            if self.sizes[id(node)] > MAX_EXPANDED_SIZE:
                self.fail("expands past 1 MB through aliases", "write the values out instead of nesting aliases")
            return node
        finally:
            self.path.pop()

    def size(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_DIGITS:
                self.fail(f"is a number of {len(node.value)} digits", f"numbers here have at most {MAX_DIGITS} digits")
            return 1 + len(node.value)
        children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
        return 1 + sum(self.sizes[id(child)] for child in children)

    def fail(self, problem: str, hint: str) -> None:
        key = "".join(p if p.startswith("[") else f".{p}" for p in self.path if p).lstrip(".") or "the top level"
        raise ConfigurationError(f"{key[:200]} in {self.source} {problem}", hint=hint)


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
        if section is not None and not isinstance(section, Mapping):
            raise _unknown_backend_key(name, section, where)
        sections[name] = MappingProxyType(_section(section, key, where))

    overrides = {}
    for model, choice in _mapping(root.get("model_overrides", {}), "model_overrides", where).items():
        key = f"model_overrides.{model}"
        overrides[str(model)] = (_name(choice, key, where),) if isinstance(choice, str) else _names(choice, key, where)

    models, lookups, drafts, draft_tokens = {}, {}, {}, {}
    for model, entry in _mapping(root.get("models", {}), "models", where).items():
        key = f"models.{model}"
        entry = _mapping(entry, key, where)
        if "prompt_lookup" in entry:
            lookups[str(model)] = _prompt_lookup(entry.pop("prompt_lookup"), f"{key}.prompt_lookup{where}")
        if "draft" in entry:
            drafts[str(model)] = _draft(entry.pop("draft"), str(model), f"{key}.draft{where}")
        if "draft_tokens" in entry:
            draft_tokens[str(model)] = _prompt_lookup(
                entry.pop("draft_tokens"), f"{key}.draft_tokens{where}", minimum=1, example="draft_tokens: 8"
            )
        for path_key, value in entry.items():
            if path_key == QUALITY_BAR:
                parse_bar(value, f"{key}.{QUALITY_BAR}{where}")
            elif not str(path_key).endswith("_path") or not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"{key}.{path_key}{where} must be a '<backend>_path: directory' entry, prompt_lookup, draft, "
                    f"draft_tokens or {QUALITY_BAR}, got {short_repr(value)}",
                    hint="e.g. pytorch_path: models/gpt2 and openvino_path: models/openvino/gpt2, prompt_lookup: 8, "
                    "or draft: <another model>",
                )
        models[str(model)] = MappingProxyType(dict(entry))

    models_dir = root.get("models_dir", "models")
    if not isinstance(models_dir, str) or not models_dir:
        raise ConfigurationError(
            f"models_dir{where} must be a directory path, got {short_repr(models_dir)}", hint="e.g. models_dir: models"
        )

    max_bytes = root.get("max_cache_bytes")
    return MuaiConfig(
        max_cache_bytes=None if max_bytes is None else parse_size(max_bytes, f"max_cache_bytes{where}"),
        default_backend=default,
        priority=priority,
        backends=MappingProxyType(sections),
        model_overrides=MappingProxyType(overrides),
        models=MappingProxyType(models),
        prompt_lookup=MappingProxyType(lookups),
        drafts=MappingProxyType(drafts),
        draft_tokens=MappingProxyType(draft_tokens),
        models_dir=models_dir,
        source=source,
        serve=MappingProxyType(_mapping(root.get("serve", {}), "serve", where)),
    )


def _prompt_lookup(
    value: Any,
    key: str,
    minimum: int = 0,
    example: str = "prompt_lookup: 8 (tokens proposed at a time from the prompt); 0 turns it off",
) -> int:
    from muai_core.contracts import MAX_PROMPT_LOOKUP

    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_PROMPT_LOOKUP:
        raise ConfigurationError(
            f"{key} must be an int from {minimum} to {MAX_PROMPT_LOOKUP}, got {short_repr(value)}",
            hint=f"e.g. {example}",
        )
    return value


def _draft(value: Any, model: str, key: str) -> str:
    """A draft model's name: text, not the model itself; "" means none."""
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{key} must be the name of another model, got {short_repr(value)}",
            hint="e.g. draft: smollm2-135m (a smaller model with the same tokenizer); draft: '' turns it off",
        )
    if value == model:
        raise ConfigurationError(
            f"{key} names the model itself ('{model}'): a model cannot draft for itself",
            hint="name a smaller model with the same tokenizer, or remove the draft key",
        )
    return value


def _unknown_backend_key(name: str, value: Any, where: str) -> ConfigurationError:
    """A key under ``backend:`` that is neither ``default``/``priority`` nor a section (a mapping): likely a typo."""
    close = difflib.get_close_matches(name, BACKEND_KEYS, n=1)
    return ConfigurationError(
        f"unknown key '{name}' at backend{where} (allowed: {', '.join(BACKEND_KEYS)}, or a backend's section, "
        f"which is a mapping; backend.{name} is a {type(value).__name__} {short_repr(value)})",
        hint=f"did you mean '{close[0]}'?" if close else f"a backend's section is e.g. backend.{name}: {{device: cpu}}",
    )


def _mapping(value: Any, key: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{key}{where} must be a mapping, got {type(value).__name__} {short_repr(value)}",
            hint="see the configuration reference in README.md",
        )
    for k in value:
        if not isinstance(k, str):
            raise ConfigurationError(f"{key}{where} has a non-text key {short_repr(k)}", hint="quote the key")
    return dict(value)


def parse_size(value: Any, key: str) -> int:
    """A positive byte count: an int, or text such as ``"512MiB"`` or ``"1.5 GB"``."""
    match = SIZE_PATTERN.match(value) if isinstance(value, str) else None
    if match and match.group(2).lower() in SIZE_UNITS and len(match.group(1)) <= MAX_DIGITS:
        whole, _, fraction = match.group(1).partition(".")
        unit = SIZE_UNITS[match.group(2).lower()]
        size = int(whole) * unit + int(fraction or "0") * unit // 10 ** len(fraction)
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        size = 0
    if not 1 <= size <= MAX_SIZE:
        raise ConfigurationError(
            f"{key} must be a positive size in bytes up to 8 EiB, got {short_repr(value)}",
            hint='e.g. 2147483648, "2GiB" or "1500MB" (units: B, KB, MB, GB, KiB, MiB, GiB)',
        )
    return size


def reject_unknown_keys(mapping: Mapping[str, Any], allowed: tuple[str, ...], key: str, where: str = "") -> None:
    """Raise ``ConfigurationError`` naming keys of ``mapping`` outside ``allowed`` (backend plugins use it too)."""
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {', '.join(str(k)[:40] for k in unknown[:10])} at {key}{where}",
            hint=f"allowed keys are: {', '.join(allowed)}",
        )


def _name(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise ConfigurationError(
            f"{key}{where} must be a backend name, got {short_repr(value)}",
            hint="use a name such as 'pytorch' or 'openvino'",
        )
    return value


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigurationError(
            f"{key}{where} must be a non-empty list of backend names, got {short_repr(value)}",
            hint="e.g. [openvino, pytorch]",
        )
    names = tuple(_name(item, f"{key}[{i}]", where) for i, item in enumerate(value))
    return tuple(dict.fromkeys(names))


def _section(value: Any, key: str, where: str) -> dict[str, Any]:
    section = _mapping(value, key, where)
    if "enable_fallback" in section and not isinstance(section["enable_fallback"], bool):
        raise ConfigurationError(
            f"{key}.enable_fallback{where} must be true or false, got {short_repr(section['enable_fallback'])}",
            hint="enable_fallback: false makes this backend's errors final instead of trying the next backend",
        )
    if "device" in section and (not isinstance(section["device"], str) or not section["device"]):
        raise ConfigurationError(
            f"{key}.device{where} must be a device name, got {short_repr(section['device'])}",
            hint="e.g. device: cpu (PyTorch: cpu, cuda, cuda:N; OpenVINO: CPU, GPU, NPU, AUTO)",
        )
    return section
