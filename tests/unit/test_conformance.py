"""The conformance suite, run against the core's own counting backend."""

from __future__ import annotations

import numpy as np
import pytest

from muai_core.testing import CountingBackend, TokenBackend
from muai_core.testing.conformance import BackendConformance, ConformanceTarget, logits_tolerance


class TestCountingBackendConformance(BackendConformance):
    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        # a pretend backend: it loads any name without reading files, encoder-decoder models included
        return ConformanceTarget(lambda: CountingBackend("counter"), "counter", model="any-name", runs_seq2seq=True)


def test_logits_tolerance_follows_the_precision_that_ran():
    reference = np.array([0.4, -2.0, 1.0], dtype=np.float32)
    assert logits_tolerance(None, reference) == logits_tolerance("f32", reference) == 1e-3
    one_bf16_step_at_half = 2.0**-9  # the INT8 difference seen on a CPU with AVX512-BF16
    assert logits_tolerance("bf16", np.array([0.5])) > one_bf16_step_at_half > logits_tolerance("f32", reference)
    assert logits_tolerance("bf16", reference) == 2 * logits_tolerance("bf16", reference / 2)
    with pytest.raises(ValueError, match="inference_precision"):
        logits_tolerance("f8", reference)


class TestTokenLoopBackendConformance(BackendConformance):
    """The suite on a backend whose engine runs its own generation loop (``token_loop``)."""

    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        return ConformanceTarget(TokenBackend, "tokens", model="any-name", eos_prompt="}", runs_seq2seq=True)
