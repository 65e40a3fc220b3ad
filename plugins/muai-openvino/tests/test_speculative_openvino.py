"""Prompt-lookup decoding on the paged graph: plain decoding's tokens, in fewer infer calls; the prefix cache
never keeps a rolled-back token; the stateful graph decodes token by token."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", ".", ",")
#: Text that restates itself, so that candidates exist; the models are random, so most are rejected.
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=24).map(lambda words: " ".join(words * 2))


@pytest.fixture(scope="module")
def ov_manager(store, tmp_path_factory) -> ModelManager:
    # f32 arithmetic: a tiny random model's logits are so flat that bf16 rounding may change a greedy choice
    # between graph calls of different shapes; the claim is about the tokens, not the CPU's rounding.
    path = tmp_path_factory.mktemp("spec") / "system.yaml"
    openvino = {"cache_dir": str(store / "models" / "openvino"), "inference_precision": "f32"}
    path.write_text(yaml.safe_dump({"models_dir": str(store / "models"), "backend": {"openvino": openvino}}))
    return ModelManager(backend="openvino", config_path=str(path), monitor=PerformanceMonitor())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=texts,
    k=st.integers(1, 8),
    new=st.integers(1, 40),
    name=st.sampled_from(["gpt2", "tiny-llama"]),
    stop=st.sampled_from([(), ("the",), ("a m",)]),
)
def test_greedy_prompt_lookup_gives_plain_decodings_tokens(ov_manager, text, k, new, name, stop):
    kwargs = dict(max_new_tokens=new, stop=stop, min_new_tokens=min(new, 3))
    plain = ov_manager.generate_result(name, text, **kwargs)
    fast = ov_manager.generate_result(name, text, prompt_lookup=k, **kwargs)
    assert (fast.token_ids, fast.text, fast.finish_reason) == (plain.token_ids, plain.text, plain.finish_reason)


def test_a_text_the_model_repeats_is_decoded_in_fewer_calls(ov_manager):
    name = "tiny-llama"
    first = ov_manager.generate_result(name, "the cat sat", max_new_tokens=16, ignore_eos=True)
    prompt = first.text + " " + first.text  # what the model says after this, it said before
    before = _batches(ov_manager, name)
    plain = ov_manager.generate_result(name, prompt, max_new_tokens=30, ignore_eos=True)
    middle = _batches(ov_manager, name)
    fast = ov_manager.generate_result(name, prompt, max_new_tokens=30, ignore_eos=True, prompt_lookup=8)
    after = _batches(ov_manager, name)
    assert fast.token_ids == plain.token_ids
    assert fast.verify_calls > 0 and fast.accepted_tokens >= 2 * fast.verify_calls
    assert after - middle < (middle - before) * 0.8


def test_blocks_filed_in_the_prefix_cache_hold_only_kept_tokens(store, tmp_path):
    """Speculation writes rejected candidates into blocks; a later prompt that shares the text must not reuse
    them. The second prompt's answer with the prefix cache equals the answer without it."""

    def make(prefix_cache: bool) -> ModelManager:
        openvino = {
            "inference_precision": "f32",
            "prefix_cache": prefix_cache,
            "cache_dir": str(store / "models" / "openvino"),
        }
        path = tmp_path / f"cache-{prefix_cache}.yaml"
        path.write_text(yaml.safe_dump({"models_dir": str(store / "models"), "backend": {"openvino": openvino}}))
        return ModelManager(backend="openvino", config_path=str(path), monitor=PerformanceMonitor())

    warm, cold = make(True), make(False)
    prompt = " ".join(WORDS)
    first = warm.generate_result("gpt2", prompt, max_new_tokens=60, ignore_eos=True, prompt_lookup=6)
    assert first.draft_tokens > first.accepted_tokens > 0, "some candidates must be accepted, some rejected"
    follow = first.text + " and"
    got = warm.generate_result("gpt2", follow, max_new_tokens=20, ignore_eos=True, prompt_lookup=4)
    expected = cold.generate_result("gpt2", follow, max_new_tokens=16, ignore_eos=True)
    assert got.token_ids == expected.token_ids
    assert warm.get_model_info("gpt2")["model_info"]["batching"]["prefix_blocks_reused"] > 0


def test_the_stateful_graph_decodes_token_by_token(store, tmp_path):
    openvino = {"attention": "stateful", "cache_dir": str(store / "models" / "openvino")}
    path = tmp_path / "stateful.yaml"
    path.write_text(yaml.safe_dump({"models_dir": str(store / "models"), "backend": {"openvino": openvino}}))
    stateful = ModelManager(backend="openvino", config_path=str(path), monitor=PerformanceMonitor())
    plain = stateful.generate_result("gpt2", "a b a b a b a", max_new_tokens=12, ignore_eos=True)
    asked = stateful.generate_result("gpt2", "a b a b a b a", max_new_tokens=12, ignore_eos=True, prompt_lookup=4)
    assert asked.token_ids == plain.token_ids and asked.verify_calls == 0


def _batches(ov_manager: ModelManager, name: str) -> int:
    return ov_manager.get_model_info(name)["model_info"]["batching"]["batches"]
