"""Prompt-lookup decoding on PyTorch slots: plain decoding's tokens (Hypothesis over prompts and k), fewer forwards."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", ".", ",")
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=16).map(lambda words: " ".join(words * 2))


@pytest.fixture(scope="module")
def torch_manager() -> ModelManager:
    return ModelManager(backend="pytorch", device="cpu", monitor=PerformanceMonitor())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=texts,
    k=st.integers(1, 8),
    new=st.integers(1, 20),
    arch=st.sampled_from(["gpt2", "llama"]),
    penalty=st.sampled_from([1.0, 1.2]),
)
def test_greedy_prompt_lookup_gives_plain_decodings_tokens(torch_manager, tiny_models, text, k, new, arch, penalty):
    kwargs = dict(max_new_tokens=new, repetition_penalty=penalty, min_new_tokens=min(new, 2))
    plain = torch_manager.generate_result(tiny_models[arch], text, **kwargs)
    fast = torch_manager.generate_result(tiny_models[arch], text, prompt_lookup=k, **kwargs)
    assert (fast.token_ids, fast.text, fast.finish_reason) == (plain.token_ids, plain.text, plain.finish_reason)


def test_a_looping_answer_is_decoded_in_fewer_forwards(torch_manager, tiny_models):
    model = tiny_models["llama"]
    plain = torch_manager.generate_result(model, "the cat sat on the mat", max_new_tokens=60, ignore_eos=True)
    fast = torch_manager.generate_result(
        model, "the cat sat on the mat", max_new_tokens=60, ignore_eos=True, prompt_lookup=6
    )
    assert fast.token_ids == plain.token_ids
    assert fast.verify_calls > 0 and fast.accepted_tokens > 0  # each accepted token is a forward saved
    figures = torch_manager.get_performance_stats(model)["backends"]["pytorch"]
    assert 0 < figures["acceptance_rate"] <= 1 and figures["tokens_per_verify"] > 1


def test_the_configs_default_turns_prompt_lookup_on_and_an_argument_wins(tiny_models, tmp_path):
    root = Path(tiny_models["llama"]).parent
    config = tmp_path / "system.yaml"
    config.write_text(yaml.safe_dump({"models_dir": str(root), "models": {"llama": {"prompt_lookup": 6}}}))
    manager = ModelManager(backend="pytorch", config_path=str(config), monitor=PerformanceMonitor())
    kwargs = dict(max_new_tokens=40, ignore_eos=True)
    assert manager.generate_result("llama", "the cat sat on the mat", **kwargs).verify_calls > 0
    assert manager.generate_result("llama", "the cat sat on the mat", prompt_lookup=0, **kwargs).verify_calls == 0
