"""muai-pytorch against the backend conformance suite, on both tiny architectures."""

from __future__ import annotations

from pathlib import Path

import pytest

from muai_core.testing.conformance import BackendConformance, ConformanceTarget
from muai_pytorch.plugin import PyTorchBackend


class TestPyTorchConformance(BackendConformance):
    @pytest.fixture(params=["gpt2", "llama"])
    def conformance_target(self, request, tiny_models) -> ConformanceTarget:
        models_dir = Path(tiny_models[request.param]).parent
        return ConformanceTarget(PyTorchBackend, "pytorch", model=request.param, config={"models_dir": str(models_dir)})
