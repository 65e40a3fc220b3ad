"""The embedded default model (SmolLM2-135M-Instruct) end to end: pull, export, answer on both backends."""

from __future__ import annotations

import json

import pytest

from muai_core import ModelManager, PerformanceMonitor
from muai_core.config import parse_config
from muai_openvino.export.pipeline import export_model
from muai_pytorch.pull import pull

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def smollm2_config(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("smollm2")
    pull("smollm2-135m", root / "models")
    export_model("smollm2-135m", parse_config({"models_dir": str(root / "models")}), "FP32", str(root / "ov"))
    path = root / "system.yaml"
    path.write_text(
        json.dumps({"models_dir": str(root / "models"), "backend": {"openvino": {"cache_dir": str(root / "ov")}}})
    )
    return str(path)


@pytest.mark.slow
def test_both_backends_answer_paris_with_the_same_tokens(smollm2_config):
    answers = {}
    for backend in ("pytorch", "openvino"):
        manager = ModelManager(backend=backend, config_path=smollm2_config, monitor=PerformanceMonitor())
        answers[backend] = manager.generate_result("smollm2-135m", QUESTION, max_new_tokens=20, chat=True)
        assert manager.get_model("smollm2-135m").backend_name == backend
    assert "Paris" in answers["openvino"].completion
    assert answers["openvino"].token_ids == answers["pytorch"].token_ids
