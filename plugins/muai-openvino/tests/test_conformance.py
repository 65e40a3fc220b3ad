"""muai-openvino against the backend conformance suite, on both tiny architectures and every precision."""

from __future__ import annotations

import pytest

from muai_core.testing.conformance import BackendConformance, ConformanceTarget
from muai_openvino.plugin import OpenVINOBackend


class TestOpenVINOConformance(BackendConformance):
    @pytest.fixture(params=["gpt2", "tiny-llama", "tiny-llama:INT8"])
    def conformance_target(self, request, store) -> ConformanceTarget:
        model, _, precision = request.param.partition(":")
        section = {"cache_dir": str(store / "models" / "openvino"), "precision": precision or "FP32"}
        config = {"models_dir": str(store / "models"), "backend": {"openvino": section}}
        return ConformanceTarget(OpenVINOBackend, "openvino", model=model, config=config)
