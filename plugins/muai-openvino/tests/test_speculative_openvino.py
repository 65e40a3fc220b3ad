"""Prompt-lookup decoding on the paged graph: plain decoding's tokens, in fewer infer calls; the prefix cache
never keeps a rolled-back token; the stateful graph decodes token by token."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor
from muai_core.contracts import GenerationRequest
from muai_core.decoding import decode_loop

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
    assert fast.verify_calls > 0 and fast.accepted_tokens > 0
    assert after - middle == (middle - before) - fast.accepted_tokens  # each accepted token saved an infer call


def test_blocks_filed_in_the_prefix_cache_hold_only_kept_tokens(store, tmp_path):
    """Speculation writes rejected candidates into blocks, then writes the kept tokens over them. A prompt made of
    what a block held before a rollback (seen through the engine's ``truncate``) must not find it in the prefix
    cache: its answer equals the answer without the prefix cache. A prompt of kept tokens reuses the blocks."""

    def batcher(prefix_cache: bool):
        openvino = {"inference_precision": "f32", "prefix_cache": prefix_cache}
        openvino["cache_dir"] = str(store / "models" / "openvino")
        path = tmp_path / f"cache-{prefix_cache}.yaml"
        path.write_text(yaml.safe_dump({"models_dir": str(store / "models"), "backend": {"openvino": openvino}}))
        manager = ModelManager(backend="openvino", config_path=str(path), monitor=PerformanceMonitor())
        manager.load_model("tiny-llama")
        return manager, manager._cache.get("tiny-llama").handle  # the engine's own sequences, fed token ids

    def decode(handle, ids: list[int], new: int, lookup: int):
        request = GenerationRequest(prompt="x", max_new_tokens=new, ignore_eos=True, prompt_lookup=lookup)
        with handle.batcher.sequence(len(ids) + new) as step:
            return decode_loop(step, ids, request, handle.codec.decode)

    (warm, handle), (_, cold) = batcher(True), batcher(False)
    engine, block = handle.batcher.engine, handle.paged_cache.block_size
    overwritten: list[list[int]] = []  # full blocks' worth of tokens a rollback wrote over
    truncate = engine.truncate

    def watched(sequence, length: int) -> None:
        held = list(sequence.state.tokens)
        if len(held) // block > length // block:
            overwritten.append(held[: len(held) // block * block])
        truncate(sequence, length)

    engine.truncate = watched
    for count in range(3, len(WORDS) + 1):
        prompt = handle.codec.encode(" ".join(WORDS[:count]))
        first = decode(handle, prompt, 80, 8)
        if overwritten:
            break
    assert overwritten, "no rollback wrote over a full block: the test needs one"
    stale = [*overwritten[0], 5]  # one more token: the prompt's last block can come from the cache
    assert decode(handle, stale, 12, 0).token_ids == decode(cold, stale, 12, 0).token_ids
    follow = prompt + list(first.token_ids[:-2])
    assert decode(handle, follow, 12, 0).token_ids == decode(cold, follow, 12, 0).token_ids
    figures = warm.get_model_info("tiny-llama")["model_info"]["batching"]
    assert figures["prefix_blocks_reused"] * block >= len(follow) - 2 * block


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
