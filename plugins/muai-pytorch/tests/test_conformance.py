"""muai-pytorch against the backend conformance suite, on the tiny causal and encoder-decoder architectures."""

from __future__ import annotations

from pathlib import Path

import pytest

from muai_core.testing.conformance import BackendConformance, ConformanceTarget
from muai_pytorch.plugin import PyTorchBackend


class TestPyTorchConformance(BackendConformance):
    @pytest.fixture(params=["gpt2", "llama", "t5", "bart"])
    def conformance_target(self, request, tiny_models, tiny_seq2seq_models) -> ConformanceTarget:
        seq2seq = request.param in tiny_seq2seq_models
        models_dir = Path({**tiny_models, **tiny_seq2seq_models}[request.param]).parent
        return ConformanceTarget(
            PyTorchBackend,
            "pytorch",
            model=request.param,
            config={"models_dir": str(models_dir)},
            seq2seq=seq2seq,
            runs_seq2seq=True,
        )
