"""muai-openvino against the backend conformance suite: both tiny architectures, every precision, both attentions.

At FP32 the greedy tokens must equal muai-pytorch's on the same model (the kit's reference check).
"""

from __future__ import annotations

import pytest

from muai_core.testing.conformance import BackendConformance, ConformanceTarget
from muai_openvino.plugin import OpenVINOBackend


class TestOpenVINOConformance(BackendConformance):
    @pytest.fixture(params=["gpt2", "tiny-llama", "tiny-llama:INT8", "tiny-llama:stateful"])
    def conformance_target(self, request, store) -> ConformanceTarget:
        model, _, variant = request.param.partition(":")
        precision = variant if variant in ("INT8", "FP16") else "FP32"
        section = {"cache_dir": str(store / "models" / "openvino"), "precision": precision}
        if variant == "stateful":
            section["attention"] = "stateful"
        config = {"models_dir": str(store / "models"), "backend": {"openvino": section}}
        reference = "pytorch" if precision == "FP32" else None
        return ConformanceTarget(OpenVINOBackend, "openvino", model=model, config=config, reference=reference)
