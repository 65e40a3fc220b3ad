"""Hypothesis properties that need a real model: backward compatibility and interface uniformity."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from muai_core import ModelManager, PerformanceMonitor
from muai_core.contracts import GenerationResult
from muai_core.plugins import default_registry
from muai_core.testing import CountingBackend, registered

prompts = st.text(string.ascii_letters + string.digits + " .,!?'", min_size=1, max_size=40).filter(str.strip)


@pytest.fixture(scope="module")
def original_implementation(tiny_models):
    """The original design's pre-integration PyTorchBackend.generate, as the design wrote it."""
    path = tiny_models["gpt2"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def generate(prompt: str, max_length: int) -> str:
        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            outputs = model.generate(**inputs, max_length=max_length, pad_token_id=tokenizer.eos_token_id)
        return tokenizer.decode(outputs[0], skip_special_tokens=True)

    return generate


# Feature: openvino-backend-integration, Property 5: Backward Compatibility Preservation
@settings(max_examples=100)
@given(prompt=prompts, extra=st.integers(1, 12))
def test_property_5_backward_compatibility(tiny_models, original_implementation, prompt, extra):
    path = tiny_models["gpt2"]
    manager = ModelManager(device="cpu", monitor=PerformanceMonitor())
    assert manager.backend_type == "pytorch"
    manager.load_model(path, "transformers")
    prompt_tokens = len(manager.get_model(path).handle.tokenizer(prompt).input_ids)
    max_length = prompt_tokens + extra
    assert manager.generate(path, prompt, max_length=max_length) == original_implementation(prompt, max_length)


batches = st.integers(1, 3).flatmap(
    lambda b: st.integers(1, 8).flatmap(
        lambda s: st.lists(st.lists(st.integers(0, 255), min_size=s, max_size=s), min_size=b, max_size=b)
    )
)


# Feature: openvino-backend-integration, Property 8: Backend Interface Uniformity
@settings(max_examples=100)
@given(ids=batches, prompt=prompts, new_tokens=st.integers(1, 6), arch=st.sampled_from(["gpt2", "llama"]))
def test_property_8_backend_interface_uniformity(tiny_models, ids, prompt, new_tokens, arch):
    """Every installed backend takes the same arguments and returns the same structure."""
    path = tiny_models[arch]
    with registered(CountingBackend(), "counting"):
        for backend in ("pytorch", "counting"):
            manager = ModelManager(backend=backend, monitor=PerformanceMonitor())
            outputs = manager.forward(
                path, {"input_ids": np.array(ids), "attention_mask": np.ones((len(ids), len(ids[0]))).astype(np.int64)}
            )
            assert list(outputs) == ["logits"]
            logits = outputs["logits"]
            assert isinstance(logits, np.ndarray) and logits.dtype == np.float32
            vocab = manager.get_model_info(path)["model_info"].get("vocab_size") or logits.shape[-1]
            assert logits.shape == (len(ids), len(ids[0]), vocab)
            assert np.isfinite(logits).all()

            text = manager.generate(path, prompt, max_new_tokens=new_tokens)
            result = manager.generate_result(path, prompt, max_new_tokens=new_tokens, return_full_text=False)
            assert isinstance(text, str) and isinstance(result, GenerationResult)
            assert text.startswith(prompt.strip()[:1]) and text.endswith(result.completion)
            assert 1 <= result.new_tokens <= new_tokens
            assert result.finish_reason in ("eos", "length", "stopped")
            assert len(result.token_latencies_s) == result.new_tokens - 1
    assert "counting" not in default_registry().backend_names()


# Feature: openvino-backend-integration, Property 8: Backend Interface Uniformity
@settings(max_examples=30, deadline=None)
@given(
    ids=batches,
    decoder_length=st.integers(1, 5),
    prompt=prompts,
    new_tokens=st.integers(1, 6),
    arch=st.sampled_from(["t5", "bart"]),
)
def test_property_8_seq2seq_models_take_the_same_arguments(
    tiny_seq2seq_models, ids, decoder_length, prompt, new_tokens, arch
):
    """An encoder-decoder model answers the same calls; forward's positions are the decoder's."""
    path = tiny_seq2seq_models[arch]
    manager = ModelManager(backend="pytorch", monitor=PerformanceMonitor())
    decoder_ids = np.zeros((len(ids), decoder_length), dtype=np.int64)
    outputs = manager.forward(path, {"input_ids": np.array(ids), "decoder_input_ids": decoder_ids})
    assert list(outputs) == ["logits"] and outputs["logits"].dtype == np.float32
    assert outputs["logits"].shape[:2] == (len(ids), decoder_length) and np.isfinite(outputs["logits"]).all()
    result = manager.generate_result(path, prompt, max_new_tokens=new_tokens)
    assert isinstance(result, GenerationResult) and 1 <= result.new_tokens <= new_tokens
    assert result.text == result.completion == manager.generate(path, prompt, max_new_tokens=new_tokens)
    assert result.finish_reason in ("eos", "length")
