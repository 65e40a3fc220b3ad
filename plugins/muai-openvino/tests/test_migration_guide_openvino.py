"""The original design's OpenVINO migration snippets and export commands, verbatim, on a real export."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from muai_core.monitor import default_monitor
from muai_core.testing.design_snippets import (
    CONFIG_FILE,
    EXISTING_USERS,
    EXPORT_COMMANDS,
    PERFORMANCE_COMPARISON,
    PROGRAMMATIC_SELECTION,
    run_snippet,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(store, tmp_path):
    """A user's project: models/gpt2, its FP32 export, and the repo's scripts/ folder."""
    shutil.copytree(store / "models" / "gpt2", tmp_path / "models" / "gpt2")
    shutil.copytree(store / "models" / "openvino" / "gpt2", tmp_path / "models" / "openvino" / "gpt2")
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "export_to_openvino.py", tmp_path / "scripts")
    return tmp_path


def test_export_commands_run_as_written(project):
    (project / "config").mkdir()
    (project / "config" / "system.yaml").write_text("models:\n  gpt2:\n    pytorch_path: models/gpt2\n")
    for command in EXPORT_COMMANDS:
        argv = shlex.split(command)
        run = subprocess.run([sys.executable, *argv[1:]], cwd=project, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{command}: {run.stderr}"
    assert (project / "models" / "openvino" / "gpt2-fp16" / "openvino_model.xml").is_file()
    assert "up to date" in run.stderr  # --all found the FP32 export current


def test_programmatic_selection_runs_on_openvino(project):
    namespace, _ = run_snippet(PROGRAMMATIC_SELECTION)
    assert namespace["model"].backend_name == "openvino" and not namespace["model"].is_fallback
    assert namespace["manager"].generate("gpt2", "Hello", max_new_tokens=3).startswith("Hello")


def test_configuration_file_selects_openvino(project):
    (project / "config").mkdir()
    (project / "config" / "system.yaml").write_text(CONFIG_FILE)
    namespace, _ = run_snippet(EXISTING_USERS)
    assert namespace["model"].backend_name == "openvino"
    assert namespace["output"].startswith("Hello world")


def test_performance_comparison_compares_real_backends(project):
    default_monitor().reset()
    namespace, printed = run_snippet(PERFORMANCE_COMPARISON)
    for manager in (namespace["pytorch_manager"], namespace["openvino_manager"]):
        manager.generate("gpt2", "Hello world", max_new_tokens=8)
    assert namespace["openvino_manager"].get_model("gpt2").backend_name == "openvino"
    comparison = namespace["pytorch_manager"].compare_backends("pytorch", "openvino")
    assert comparison["throughput_improvement"] > 0 and comparison["openvino_stats"]["sample_count"] == 1
    assert printed.startswith("Speedup: ")
