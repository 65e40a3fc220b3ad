"""Fixtures for testing muai and backend plugins, registered with pytest through ``pytest11``.

    def test_mine(muai_workdir, muai_registry, muai_broken_import): ...

Two opt-in settings for a test suite (muai's own suites turn both on in the root ``pyproject.toml``)::

    [tool.pytest.ini_options]
    muai_isolated_cwd = true                  # every test runs in its own muai_workdir
    addopts = "--hypothesis-profile=muai"     # Hypothesis with function-scoped fixtures, no deadline
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from muai_core import availability
from muai_core.locations import HOME_ENV
from muai_core.plugins import PluginRegistry

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # Hypothesis is a test extra; without it there is no profile to offer
    pass
else:
    # @given tests take function-scoped fixtures (the working directory) that stay the same across examples;
    # a model load can take longer than Hypothesis's default deadline.
    settings.register_profile("muai", suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("muai_isolated_cwd", "run every test in its own muai_workdir", type="bool", default=False)


@pytest.fixture
def muai_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory: no config/system.yaml, no $MUAI_CONFIG, an empty user muai home
    (``$MUAI_HOME``, outside the directory), and the hub switched off."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUAI_CONFIG", raising=False)
    monkeypatch.setenv(HOME_ENV, str(tmp_path.parent / f"{tmp_path.name}-muai-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the hub in a test; fail fast
    return tmp_path


@pytest.fixture(autouse=True)
def muai_isolated_cwd(request: pytest.FixtureRequest) -> None:
    """With the ini setting ``muai_isolated_cwd = true``, each test runs in ``muai_workdir``."""
    if request.config.getini("muai_isolated_cwd"):
        request.getfixturevalue("muai_workdir")


@pytest.fixture
def muai_registry() -> Iterator[PluginRegistry]:
    """A registry with no plugins at all: register the ones a test needs with ``register(plugin, name)``."""
    yield PluginRegistry()


@pytest.fixture
def muai_broken_import(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, BaseException], None]:
    """``break_import(name, error)``: for this test, ``import name`` raises ``error`` as a broken install would
    (e.g. ``OSError`` for a missing shared library), and availability checks import their modules afresh."""
    root = tmp_path_factory.mktemp("broken-imports")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(availability, "_import_error", functools.cache(availability._import_error.__wrapped__))

    def break_import(name: str, error: BaseException) -> None:
        if name in sys.modules:
            monkeypatch.delitem(sys.modules, name)
        (root / f"{name}.py").write_text(f"raise {error!r}\n", encoding="utf-8")
        importlib.invalidate_caches()

    return break_import
