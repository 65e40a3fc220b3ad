"""Shared fixtures: a fresh registry with real in-place backends (each test runs in its own empty directory)."""

from __future__ import annotations

import pytest

from muai_core import ModelManager, PerformanceMonitor
from muai_core.plugins import PluginRegistry
from muai_core.testing import CountingBackend, FaultyBackend


@pytest.fixture
def counting() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
def registry(muai_registry, counting) -> PluginRegistry:
    """A registry holding only the in-place ``counting`` backend (no entry points)."""
    muai_registry.register(counting, "counting")
    return muai_registry


@pytest.fixture
def monitor() -> PerformanceMonitor:
    return PerformanceMonitor()


@pytest.fixture
def make_manager(registry, monitor):
    def make(**kwargs) -> ModelManager:
        kwargs.setdefault("backend", "counting")
        return ModelManager(registry=registry, monitor=monitor, **kwargs)

    return make


@pytest.fixture
def add_faulty(registry):
    def add(name: str = "faulty", **kwargs) -> FaultyBackend:
        backend = FaultyBackend(name=name, **kwargs)
        registry.register(backend, name)
        return backend

    return add


def write_config(text: str, path: str = "config/system.yaml") -> str:
    from pathlib import Path

    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    return str(file)
