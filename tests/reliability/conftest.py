"""Tiny models and their OpenVINO exports, built once per session, for the reliability tests.

These tests need every backend installed (the ``reliability`` nox session installs them).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from muai_core import ModelManager, PerformanceMonitor
from muai_core.config import parse_config
from muai_openvino.export.pipeline import export_model
from muai_pytorch.testing import build_tiny_model

MODELS = {"gpt2": "gpt2", "tiny-llama": "llama"}
BACKENDS = ("pytorch", "openvino", "numpy")


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    for name, arch in MODELS.items():
        build_tiny_model(root / "models" / name, arch)
        export_model(name, parse_config({"models_dir": str(root / "models")}), "FP32", str(root / "openvino"))
    return root


@pytest.fixture
def make_manager(muai_workdir):
    """A manager whose chain is ``default`` then ``then``; fallback off unless asked, a fresh monitor."""

    def make(
        models_dir: Path, openvino_dir: Path, default: str, fallback: bool = False, then: str = "pytorch"
    ) -> ModelManager:
        backend = {name: {"enable_fallback": fallback} for name in BACKENDS}
        backend["openvino"]["cache_dir"] = str(openvino_dir)
        config = {"models_dir": str(models_dir), "backend": {"default": default, "priority": [then], **backend}}
        path = muai_workdir / "system.yaml"
        path.write_text(yaml.safe_dump(config))
        return ModelManager(config_path=path, monitor=PerformanceMonitor())

    return make
