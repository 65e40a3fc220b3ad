"""muai-numpy against muai's backend conformance suite."""

from __future__ import annotations

import pytest

from muai_core.testing.conformance import BackendConformance, ConformanceTarget
from muai_numpy.plugin import NumpyBackend


class TestNumpyConformance(BackendConformance):
    @pytest.fixture(params=["gpt2", "llama"])
    def conformance_target(self, request, models_dir) -> ConformanceTarget:
        return ConformanceTarget(NumpyBackend, "numpy", model=request.param, config={"models_dir": str(models_dir)})
