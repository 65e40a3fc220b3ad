"""Register a plugin in place for the duration of a test, without installing it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from muai_core.plugins import PluginRegistry, default_registry


@contextmanager
def registered(plugin: object, name: str, registry: PluginRegistry | None = None) -> Iterator[object]:
    """``with registered(MyBackend(), "mine"):`` makes backend ``mine`` available, then removes it."""
    registry = registry or default_registry()
    registry.register(plugin, name)
    try:
        yield plugin
    finally:
        registry.unregister(name)
