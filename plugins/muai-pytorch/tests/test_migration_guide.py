"""The original design's migration-guide snippets, verbatim, against a local model directory (PyTorch path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from muai_core.monitor import default_monitor
from muai_core.testing.design_snippets import (
    CONFIG_FILE,
    EXISTING_USERS,
    PERFORMANCE_COMPARISON,
    PROGRAMMATIC_SELECTION,
    run_snippet,
)


@pytest.fixture
def gpt2_in_models_dir(tiny_models):
    shutil.copytree(tiny_models["gpt2"], "models/gpt2")


def test_existing_code_runs_unchanged(gpt2_in_models_dir):
    namespace, _ = run_snippet(EXISTING_USERS)
    assert namespace["output"].startswith("Hello world") and len(namespace["output"]) > len("Hello world")
    assert namespace["model"].backend_name == "pytorch"


def test_programmatic_selection_falls_back_to_pytorch_without_openvino(gpt2_in_models_dir, caplog):
    namespace, _ = run_snippet(PROGRAMMATIC_SELECTION)
    model = namespace["model"]
    assert model.backend_name in ("openvino", "pytorch")
    if model.backend_name == "pytorch":
        assert model.is_fallback and "falling back to pytorch" in caplog.text


def test_configuration_file_is_honoured(gpt2_in_models_dir):
    Path("config").mkdir()
    Path("config/system.yaml").write_text(CONFIG_FILE)
    namespace, _ = run_snippet(EXISTING_USERS)
    manager = namespace["manager"]
    assert manager.backend_type == "openvino"
    assert manager.plan("gpt2").chain[0] == "openvino" and manager.plan("t5-small").chain == ("pytorch",)


def test_performance_comparison_prints_a_speedup(gpt2_in_models_dir):
    default_monitor().reset()
    _, printed = run_snippet(PERFORMANCE_COMPARISON)
    assert printed.startswith("Speedup: ") and printed.strip().endswith("x")
