"""The seed's migration-guide snippets, verbatim, against a local model directory (PyTorch path)."""

from __future__ import annotations

import contextlib
import io
import shutil
import textwrap
from pathlib import Path

import pytest

from muai_core.monitor import default_monitor

EXISTING_USERS = """
# This code works exactly as before
from mm_orch.runtime.model_manager import ModelManager

manager = ModelManager(device="cpu")
model = manager.load_model("gpt2", "transformers")
output = manager.generate("gpt2", "Hello world")
"""

PROGRAMMATIC_SELECTION = """
from mm_orch.runtime.model_manager import ModelManager

# Use OpenVINO for all models
manager = ModelManager(
    device="cpu",
    backend="openvino"
)

# Or specify per model
model = manager.load_model(
    "gpt2",
    "transformers",
    backend_override="openvino"
)
"""

CONFIG_FILE = """
# config/system.yaml
backend:
  default: openvino
  openvino:
    device: CPU
    enable_fallback: true

model_overrides:
  gpt2: openvino
  t5-small: pytorch
"""

PERFORMANCE_COMPARISON = """
from mm_orch.runtime.model_manager import ModelManager

# Create managers with different backends
pytorch_manager = ModelManager(backend="pytorch")
openvino_manager = ModelManager(backend="openvino")

# Load same model in both
pytorch_manager.load_model("gpt2", "transformers")
openvino_manager.load_model("gpt2", "transformers")

# Compare performance
pytorch_stats = pytorch_manager.get_performance_stats("gpt2")
openvino_stats = openvino_manager.get_performance_stats("gpt2")

comparison = pytorch_manager.compare_backends(
    "pytorch",
    "openvino"
)
print(f"Speedup: {comparison['throughput_improvement']:.2f}x")
"""


@pytest.fixture
def gpt2_in_models_dir(tiny_models):
    shutil.copytree(tiny_models["gpt2"], "models/gpt2")


def run_snippet(code: str) -> tuple[dict, str]:
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(textwrap.dedent(code), "<snippet>", "exec"), namespace)
    return namespace, out.getvalue()


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
