"""Draft-model speculative decoding with an OpenVINO target: plain decoding's tokens (Hypothesis over prompts and
k) with a draft on OpenVINO or on PyTorch; a draft on the stateful graph is not used, and the reason is recorded."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", ".", ",")
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=16).map(" ".join)


def manager_for(store, path, models: dict, overrides: dict | None = None, **openvino) -> ModelManager:
    # f32 arithmetic: a tiny random model's logits are so flat that bf16 rounding may change a greedy choice
    # between graph calls of different shapes (see test_speculative_openvino.py)
    openvino = {"cache_dir": str(store / "models" / "openvino"), "inference_precision": "f32", **openvino}
    data = {"models_dir": str(store / "models"), "backend": {"openvino": openvino}, "models": models}
    path.write_text(yaml.safe_dump({**data, "model_overrides": overrides or {}}))
    return ModelManager(backend="openvino", config_path=str(path), monitor=PerformanceMonitor())


@pytest.fixture(scope="module")
def ov_drafted(store, tmp_path_factory) -> ModelManager:
    """``tiny-llama`` drafted by ``gpt2``; ``llama-copy`` is tiny-llama's own export; ``gpt2-torch`` is gpt2 on
    PyTorch."""
    models = {
        "tiny-llama": {"draft": "gpt2"},
        "llama-copy": {"openvino_path": str(store / "models" / "openvino" / "tiny-llama")},
        "gpt2-torch": {"pytorch_path": str(store / "models" / "gpt2")},
    }
    path = tmp_path_factory.mktemp("ov-draft") / "system.yaml"
    return manager_for(store, path, models, {"gpt2-torch": "pytorch"})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=texts,
    k=st.integers(1, 8),
    new=st.integers(1, 30),
    draft=st.sampled_from(["gpt2", "llama-copy", "gpt2-torch"]),
    stop=st.sampled_from([(), ("the",)]),
)
def test_greedy_decoding_with_a_draft_gives_plain_decodings_tokens(ov_drafted, text, k, new, draft, stop):
    kwargs = dict(max_new_tokens=new, stop=stop, min_new_tokens=min(new, 3))
    plain = ov_drafted.generate_result("tiny-llama", text, draft="", **kwargs)
    fast = ov_drafted.generate_result("tiny-llama", text, draft=draft, draft_tokens=k, **kwargs)
    assert (fast.token_ids, fast.text, fast.finish_reason) == (plain.token_ids, plain.text, plain.finish_reason)
    if draft == "llama-copy":  # its own graph: what it checks, it accepts
        assert fast.draft_tokens - fast.accepted_tokens <= k  # (the last round's may go unchecked)


def test_the_targets_own_export_as_draft_saves_infer_calls(ov_drafted):
    info = lambda: ov_drafted.get_model_info("tiny-llama")["model_info"]["batching"]["batches"]  # noqa: E731
    kwargs = dict(max_new_tokens=40, ignore_eos=True)
    before = info()
    plain = ov_drafted.generate_result("tiny-llama", "the cat sat", draft="", **kwargs)
    middle = info()
    fast = ov_drafted.generate_result("tiny-llama", "the cat sat", draft="llama-copy", **kwargs)
    after = info()
    assert fast.token_ids == plain.token_ids and fast.accepted_tokens == fast.draft_tokens > 0
    assert after - middle == (middle - before) - fast.accepted_tokens < (middle - before) / 2
    assert ov_drafted.get_model_info("tiny-llama")["draft"] == {"model": "llama-copy", "unused": None}


def test_the_stateful_graph_neither_drafts_nor_verifies_and_the_reason_is_recorded(store, tmp_path):
    models = {"tiny-llama": {"draft": "gpt2"}, "llama-torch": {"pytorch_path": str(store / "models" / "tiny-llama")}}
    manager = manager_for(
        store, tmp_path / "stateful.yaml", models, {"llama-torch": "pytorch"}, attention="stateful"
    )  # fmt: skip
    for target, reason in (("tiny-llama", "cannot check several tokens"), ("llama-torch", "no decode step")):
        plain = manager.generate_result(target, "a b a b", max_new_tokens=12, ignore_eos=True, draft="")
        asked = manager.generate_result(target, "a b a b", max_new_tokens=12, ignore_eos=True, draft="gpt2")
        assert asked.token_ids == plain.token_ids and asked.verify_calls == 0
        status = manager.get_model_info(target)["draft"]
        assert status["model"] == "gpt2" and reason in status["unused"] and "draft runs on openvino" in status["unused"]
