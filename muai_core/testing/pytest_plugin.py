"""Fixtures for testing muai and backend plugins, registered with pytest through ``pytest11``.

def test_mine(muai_workdir, muai_registry): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from muai_core.locations import HOME_ENV
from muai_core.plugins import PluginRegistry


@pytest.fixture
def muai_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory: no config/system.yaml, no $MUAI_CONFIG, an empty user muai home
    (``$MUAI_HOME``, outside the directory), and the hub switched off."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUAI_CONFIG", raising=False)
    monkeypatch.setenv(HOME_ENV, str(tmp_path.parent / f"{tmp_path.name}-muai-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the hub in a test; fail fast
    return tmp_path


@pytest.fixture
def muai_registry() -> Iterator[PluginRegistry]:
    """A registry with no plugins at all: register the ones a test needs with ``register(plugin, name)``."""
    yield PluginRegistry()
