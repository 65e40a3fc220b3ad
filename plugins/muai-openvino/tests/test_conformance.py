"""muai-openvino against the backend conformance suite: both tiny architectures, every precision, both attentions,
and the tiny encoder-decoder models (T5, BART).

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
        return ConformanceTarget(
            OpenVINOBackend, "openvino", model=model, config=config, reference=reference, runs_seq2seq=True
        )


class TestOpenVINOSeq2SeqConformance(BackendConformance):
    @pytest.fixture(params=["t5", "bart", "t5:INT8"])
    def conformance_target(self, request, seq2seq_store) -> ConformanceTarget:
        model, _, precision = request.param.partition(":")
        section = {"cache_dir": str(seq2seq_store / "models" / "openvino"), "precision": precision or "FP32"}
        config = {"models_dir": str(seq2seq_store / "models"), "backend": {"openvino": section}}
        reference = None if precision else "pytorch"
        return ConformanceTarget(
            OpenVINOBackend, "openvino", model=model, config=config, reference=reference, seq2seq=True
        )
