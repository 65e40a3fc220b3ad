"""Plugin discovery through the ``muai`` entry-point group, with fault isolation."""

from __future__ import annotations

import inspect
import logging
import os
import shlex
import threading
from dataclasses import dataclass
from importlib import metadata

import pluggy

from muai_core import hookspecs
from muai_core.backend import Backend
from muai_core.errors import BackendError, ConfigurationError, PluginError, short_repr

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT
#: Comma-separated plugin names (entry-point or distribution names) to load; empty loads none.
LOAD_PLUGINS_ENV = "MUAI_LOAD_PLUGINS"

#: Backends muai knows how to install, for messages about a backend that is not installed.
KNOWN_BACKENDS = {
    "pytorch": "pip install muai-pytorch",
    "openvino": "pip install muai-openvino",
}


@dataclass(frozen=True)
class PluginRecord:
    """What discovery found for one plugin: where it came from and whether it loaded."""

    name: str
    distribution: str | None = None
    version: str | None = None
    error: str = ""
    hooks: tuple[str, ...] = ()

    @property
    def loaded(self) -> bool:
        return not self.error


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


class PluginRegistry:
    """The plugins of one process: loads entry points, registers plugins in place, hands out backends."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm or make_plugin_manager()
        self._records: dict[str, PluginRecord] = {}
        self._backends: dict[str, Backend] = {}
        self._left_out: dict[str, PluginRecord] = {}  # installed, but MUAI_LOAD_PLUGINS leaves them out
        self._load_plugins = ""  # MUAI_LOAD_PLUGINS=value that left them out, for messages
        self._lock = threading.RLock()

    def load_entry_points(self) -> None:
        """Register every plugin of the ``muai`` group that ``MUAI_LOAD_PLUGINS`` allows."""
        value = os.environ.get(LOAD_PLUGINS_ENV)
        wanted = None if value is None else {part.strip() for part in value.split(",") if part.strip()}
        self._load_plugins = f"{LOAD_PLUGINS_ENV}={shlex.quote(value or '')}"
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            if wanted is not None and ep.name not in wanted and dist not in wanted:
                self._left_out[ep.name] = PluginRecord(ep.name, dist, version)
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                obj = ep.load()
                self.register(obj() if inspect.isclass(obj) else obj, ep.name, distribution=dist, version=version)
            except Exception as exc:  # a broken plugin must not break discovery
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("muai: plugin '%s' (%s) skipped: %s", ep.name, dist, reason)
                self._records[ep.name] = PluginRecord(ep.name, dist, version, error=reason)

    def register(
        self, plugin: object, name: str, *, distribution: str | None = None, version: str | None = None
    ) -> None:
        """Register ``plugin`` under ``name``; a plugin that implements ``muai_load_model`` is a backend."""
        with self._lock:
            self.pm.register(plugin, name=name)
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            try:
                self.pm.check_pending()  # a misspelt muai_ hook fails here, not silently later
                if "muai_load_model" in hooks:
                    self._backends[name] = Backend(name, plugin, self.pm)
            except (BackendError, pluggy.PluginValidationError):
                self.pm.unregister(name=name)
                raise
            self._records[name] = PluginRecord(name, distribution, version, hooks=hooks)

    def unregister(self, name: str) -> None:
        with self._lock:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._backends.pop(name, None)
            self._records.pop(name, None)

    def records(self) -> list[PluginRecord]:
        return sorted(self._records.values(), key=lambda r: r.name)

    def left_out(self) -> tuple[str, list[PluginRecord]]:
        """``MUAI_LOAD_PLUGINS=value`` and the installed plugins it kept from loading (none when it is unset)."""
        return self._load_plugins, sorted(self._left_out.values(), key=lambda r: r.name)

    def backend_names(self) -> list[str]:
        return sorted(self._backends)

    def backend(self, name: str) -> Backend:
        try:
            return self._backends[name]
        except KeyError:
            raise self.unknown_backend_error(name) from None

    def known_models(self) -> dict[str, str]:
        """``{model name: command that fetches it}`` from every plugin's ``muai_known_models``."""
        known: dict[str, str] = {}
        for answer in self.pm.hook.muai_known_models():
            if not isinstance(answer, dict):
                raise PluginError(f"muai_known_models must return a dict of name -> command, got {short_repr(answer)}")
            known.update({k: v for k, v in answer.items() if isinstance(k, str) and isinstance(v, str)})
        return known

    def check_backend_name(self, name: object, *, what: str = "backend") -> str:
        """Accept an installed backend, or a known one that is not installed; reject anything else."""
        if isinstance(name, str) and (name in self._backends or name in KNOWN_BACKENDS or name in self._left_out):
            return name
        raise self.unknown_backend_error(name, what=what)

    def left_out_error(self, name: object, *, what: str = "backend") -> ConfigurationError | None:
        """The error for a backend that is installed but left out by ``MUAI_LOAD_PLUGINS``; None for others."""
        if not isinstance(name, str) or name not in self._left_out or name in self._backends:
            return None
        return ConfigurationError(
            f"{what} '{name}' is installed but not loaded: {self._load_plugins} leaves it out",
            hint=f"add it to {LOAD_PLUGINS_ENV} or unset the variable",
        )

    def unknown_backend_error(self, name: object, *, what: str = "backend") -> ConfigurationError:
        left_out = self.left_out_error(name, what=what)
        if left_out is not None:
            return left_out
        installed = ", ".join(self.backend_names()) or "none"
        if isinstance(name, str) and name in KNOWN_BACKENDS:
            return ConfigurationError(
                f"{what} '{name}' is not installed (installed backends: {installed})",
                hint=f"install it with: {KNOWN_BACKENDS[name]}",
            )
        return ConfigurationError(
            f"unknown {what} {name!r}; installed backends: {installed}",
            hint="pick one of the installed backends, or install the plugin that provides it",
        )


_default: PluginRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> PluginRegistry:
    """The process-wide registry, with entry points loaded on first use."""
    global _default
    with _default_lock:
        if _default is None:
            registry = PluginRegistry()
            registry.load_entry_points()
            _default = registry
        return _default
