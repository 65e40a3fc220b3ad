"""Plugin discovery through real entry points (a distribution written to disk), isolation, env switch."""

from __future__ import annotations

import sys
import textwrap

import pluggy
import pytest

from muai_core import ModelManager, plugins
from muai_core.cli import main
from muai_core.errors import ConfigurationError, ModelLoadError, PluginError
from muai_core.hookspecs import hookimpl
from muai_core.plugins import PluginRegistry
from muai_core.testing import CountingBackend

GOOD = """
from muai_core.testing import CountingBackend

class Plugin(CountingBackend):
    pass
"""


@pytest.fixture
def install(tmp_path, monkeypatch):
    """Write a package and its .dist-info (with entry_points.txt) onto sys.path: a real installed plugin."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(dist: str, ep_name: str, code: str, target: str = "Plugin") -> None:
        package = f"pkg_{dist.replace('-', '_')}"
        (site / f"{package}.py").write_text(textwrap.dedent(code))
        info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[muai]\n{ep_name} = {package}:{target}\n")

    yield install
    for name in [m for m in sys.modules if m.startswith("pkg_")]:
        del sys.modules[name]


@pytest.fixture(autouse=True)
def only_test_plugins(monkeypatch):
    """Installed plugins (muai-pytorch) stay out of these tests' way."""
    monkeypatch.setenv("MUAI_LOAD_PLUGINS", "good,other,broken,nodeps")


def test_entry_point_plugin_is_discovered_with_its_distribution(install):
    install("muai-good", "good", GOOD)
    registry = PluginRegistry()
    registry.load_entry_points()
    record = {r.name: r for r in registry.records()}["good"]
    assert (record.distribution, record.version, record.loaded) == ("muai-good", "1.2.3", True)
    assert "good" in registry.backend_names()
    assert "muai_generate" in record.hooks


def test_broken_and_dependency_less_plugins_are_recorded_and_skipped(install, caplog):
    install("muai-good", "good", GOOD)
    install("muai-broken", "broken", "raise RuntimeError('bug at import')\n")
    install("muai-nodeps", "nodeps", "import a_module_that_is_not_installed\n")
    registry = PluginRegistry()
    registry.load_entry_points()
    records = {r.name: r for r in registry.records()}
    assert registry.backend_names() == ["good"]
    assert "RuntimeError: bug at import" in records["broken"].error
    assert "ModuleNotFoundError" in records["nodeps"].error
    assert "plugin 'broken'" in caplog.text


def test_misspelt_or_mistyped_hooks_fail_at_registration():
    class Misspelt(CountingBackend):
        @hookimpl
        def muai_generat(self, model, request):  # typo
            return None

    class ExtraArgument(CountingBackend):
        @hookimpl
        def muai_generate(self, model, request, temperature):
            return None

    registry = PluginRegistry()
    with pytest.raises(pluggy.PluginValidationError):
        registry.register(Misspelt(), "misspelt")
    with pytest.raises(pluggy.PluginValidationError):
        registry.register(ExtraArgument(), "extra")
    assert registry.backend_names() == [] and not registry.pm.get_plugins()


def test_incomplete_backend_is_rejected_with_the_missing_hooks():
    class LoadOnly:
        @hookimpl
        def muai_load_model(self, request):
            return object()

    registry = PluginRegistry()
    with pytest.raises(PluginError, match="muai_generate"):
        registry.register(LoadOnly(), "loadonly")
    assert registry.backend_names() == []


def test_hookimpl_may_take_a_subset_of_the_arguments(make_manager, registry):
    class Minimal(CountingBackend):
        @hookimpl
        def muai_unload_model(self):  # takes none of the spec's arguments
            self.unloads = getattr(self, "unloads", 0) + 1

    backend = Minimal()
    registry.register(backend, "minimal")
    manager = make_manager(backend="minimal")
    manager.load_model("m")
    assert manager.unload_model("m") is True
    assert backend.unloads == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", []), ("good", ["good"]), ("muai-other", ["other"]), ("good, other", ["good", "other"])],
)
def test_load_plugins_env_limits_what_loads(install, monkeypatch, value, expected):
    install("muai-good", "good", GOOD)
    install("muai-other", "other", GOOD)
    monkeypatch.setenv("MUAI_LOAD_PLUGINS", value)
    registry = PluginRegistry()
    registry.load_entry_points()
    assert registry.backend_names() == expected


def test_unknown_backend_error_lists_installed_and_known_names_get_an_install_hint(registry):
    with pytest.raises(ConfigurationError, match="installed backends: counting"):
        registry.check_backend_name("tensorflow")
    assert registry.check_backend_name("openvino") == "openvino"
    error = registry.unknown_backend_error("openvino")
    assert "pip install muai-openvino" in str(error)


LEFT_OUT = "backend 'other' is installed but not loaded: MUAI_LOAD_PLUGINS=good leaves it out"


def test_a_backend_left_out_by_load_plugins_is_named_as_such(install, monkeypatch):
    install("muai-good", "good", GOOD)
    install("muai-other", "other", GOOD)
    monkeypatch.setenv("MUAI_LOAD_PLUGINS", "good")
    registry = PluginRegistry()
    registry.load_entry_points()
    assert registry.check_backend_name("other") == "other"
    with pytest.raises(ConfigurationError) as info:
        registry.backend("other")
    assert (info.value.reason, info.value.hint) == (LEFT_OUT, "add it to MUAI_LOAD_PLUGINS or unset the variable")
    with pytest.raises(ModelLoadError, match=f"other: unavailable \\({LEFT_OUT}\\. add it to MUAI_LOAD_PLUGINS"):
        ModelManager(registry=registry, backend="other").load_model("m")


@pytest.mark.parametrize(
    ("value", "lines"),
    [
        ("", ["good         muai-good 1.2.3              not loaded: MUAI_LOAD_PLUGINS='' leaves it out",
              "other        muai-other 1.2.3             not loaded: MUAI_LOAD_PLUGINS='' leaves it out",
              "no plugins loaded: add them to MUAI_LOAD_PLUGINS or unset the variable"]),
        ("other", ["other        muai-other 1.2.3             available",
                   "good         muai-good 1.2.3              not loaded: MUAI_LOAD_PLUGINS=other leaves it out"]),
    ],
)  # fmt: skip
def test_plugins_command_lists_what_load_plugins_left_out(install, monkeypatch, capsys, value, lines):
    install("muai-good", "good", GOOD)
    install("muai-other", "other", GOOD)
    monkeypatch.setenv("MUAI_LOAD_PLUGINS", value)
    monkeypatch.setattr(plugins, "_default", None)  # a fresh process's registry, read from the entry points
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.split()[0] in ("good", "other", "no")] == lines
    assert "no plugins installed" not in "\n".join(out)


def test_doctor_says_load_plugins_left_every_backend_out(install, monkeypatch, capsys):
    install("muai-good", "good", GOOD)
    monkeypatch.setenv("MUAI_LOAD_PLUGINS", "")
    monkeypatch.setattr(plugins, "_default", None)
    assert main(["doctor"]) == 2
    problem = next(line for line in capsys.readouterr().out.splitlines() if "no backend is" in line)
    assert problem.startswith("problem: no backend is loaded: MUAI_LOAD_PLUGINS='' leaves out ") and "good" in problem
