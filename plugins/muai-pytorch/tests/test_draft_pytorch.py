"""Draft-model speculative decoding on PyTorch: plain decoding's tokens (Hypothesis over prompts and k) with a
random draft that mostly disagrees and with the target's own weights as draft; the config's checks; a draft
that does not load leaves plain decoding with the reason recorded."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muai_core import ModelManager, PerformanceMonitor
from muai_core.errors import ConfigurationError, InvalidInputError
from muai_pytorch.testing import build_tokenizer

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", ".", ",")
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=16).map(" ".join)


def manager_for(tmp: Path, tiny_models: dict[str, str], models: dict) -> ModelManager:
    config = tmp / "system.yaml"
    config.write_text(yaml.safe_dump({"models_dir": str(Path(tiny_models["llama"]).parent), "models": models}))
    return ModelManager(backend="pytorch", config_path=str(config), monitor=PerformanceMonitor())


@pytest.fixture(scope="module")
def drafted(tiny_models, tmp_path_factory) -> ModelManager:
    """``llama`` drafted by the random ``gpt2`` (same tokenizer); ``llama-copy`` is llama's own weights."""
    models = {"llama": {"draft": "gpt2"}, "llama-copy": {"pytorch_path": tiny_models["llama"]}}
    return manager_for(tmp_path_factory.mktemp("draft"), tiny_models, models)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=texts,
    k=st.integers(1, 8),
    new=st.integers(1, 24),
    draft=st.sampled_from(["gpt2", "llama-copy"]),
    penalty=st.sampled_from([1.0, 1.2]),
)
def test_greedy_decoding_with_a_draft_gives_plain_decodings_tokens(drafted, text, k, new, draft, penalty):
    kwargs = dict(max_new_tokens=new, repetition_penalty=penalty, min_new_tokens=min(new, 2))
    plain = drafted.generate_result("llama", text, draft="", **kwargs)
    fast = drafted.generate_result("llama", text, draft=draft, draft_tokens=k, **kwargs)
    assert (fast.token_ids, fast.text, fast.finish_reason) == (plain.token_ids, plain.text, plain.finish_reason)
    if draft == "llama-copy" and penalty == 1.0:  # its own weights: what it checks, it accepts
        assert fast.draft_tokens - fast.accepted_tokens <= k  # (the last round's may go unchecked)


def test_the_configured_draft_is_used_its_figures_recorded_and_an_argument_turns_it_off(drafted):
    text, kwargs = "the cat sat on the mat", dict(max_new_tokens=30, ignore_eos=True)
    plain = drafted.generate_result("llama", text, draft="", **kwargs)
    own = drafted.generate_result("llama", text, draft="llama-copy", **kwargs)
    configured = drafted.generate_result("llama", text, **kwargs)
    assert own.token_ids == configured.token_ids == plain.token_ids
    assert plain.verify_calls == 0 and configured.verify_calls > 0
    assert own.accepted_tokens == own.draft_tokens and own.verify_calls < 30 / 2
    assert drafted.get_model_info("llama")["draft"] == {"model": "gpt2", "unused": None}
    figures = drafted.get_performance_stats("llama")["backends"]["pytorch"]
    assert 0 < figures["acceptance_rate"] <= 1 and figures["tokens_per_verify"] > 1


def test_a_draft_is_checked(drafted, tiny_models, tmp_path):
    with pytest.raises(InvalidInputError, match=r"draft='llama' names the model itself"):
        drafted.generate("llama", "hi", draft="llama")
    with pytest.raises(InvalidInputError, match=r"draft='nowhere' names 'nowhere', which is no model here"):
        drafted.generate("llama", "hi", draft="nowhere")
    with pytest.raises(InvalidInputError, match=r"draft='\.\./x': model '\.\./x' is not a directory"):
        drafted.generate("llama", "hi", draft="../x")
    other = tmp_path / "other-tokenizer"
    shutil.copytree(tiny_models["gpt2"], other)
    build_tokenizer(other, vocab_size=384, seq2seq=True)  # the same size, other tokens
    manager = manager_for(tmp_path, tiny_models, {"llama": {"draft": "other"}, "other": {"pytorch_path": str(other)}})
    with pytest.raises(ConfigurationError, match=r"models\.llama\.draft: 'other' has another vocabulary.*tokenizer"):
        manager.generate("llama", "hi", max_new_tokens=3)
    manager = manager_for(tmp_path, tiny_models, {"llama": {"draft": "missing"}})
    with pytest.raises(ConfigurationError, match=r"models\.llama\.draft names 'missing', which is no model here"):
        manager.generate("llama", "hi", max_new_tokens=3)


def test_a_draft_that_fails_to_load_leaves_plain_decoding_and_says_why(tiny_models, tmp_path, caplog):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    manager = manager_for(
        tmp_path, tiny_models, {"llama": {"draft": "broken"}, "broken": {"pytorch_path": str(broken)}}
    )
    plain = manager.generate_result("llama", "the cat", max_new_tokens=10, draft="")
    with caplog.at_level(logging.WARNING, logger="muai_core.draft"):
        result = manager.generate_result("llama", "the cat", max_new_tokens=10)
    assert result.token_ids == plain.token_ids and result.verify_calls == 0
    status = manager.get_model_info("llama")["draft"]
    assert status["model"] == "broken" and status["unused"].startswith("it failed to load")
    assert "decodes without its draft model 'broken'" in caplog.text


def test_the_cli_takes_a_draft_for_generate_and_bench(tiny_models, tmp_path, capsys):
    from muai_core.cli import main

    models = {"llama": {}, "llama-copy": {"pytorch_path": tiny_models["llama"]}}
    config = tmp_path / "system.yaml"
    config.write_text(yaml.safe_dump({"models_dir": str(Path(tiny_models["llama"]).parent), "models": models}))
    argv = ["--config", str(config), "generate", "llama", "the cat sat", "--backend", "pytorch", "--max-new-tokens"]
    assert main([*argv, "12"]) == 0
    plain = capsys.readouterr().out
    assert main([*argv, "12", "--draft", "llama-copy"]) == 0
    assert capsys.readouterr().out == plain
    assert main([*argv, "12", "--draft", "no-such-model"]) == 2
    assert "draft='no-such-model' names 'no-such-model', which is no model here" in capsys.readouterr().err
    bench = ["--config", str(config), "bench", "llama", "--backends", "pytorch", "--runs", "1", "--prompt", "the cat"]
    assert main([*bench, "--new-tokens", "8", "--draft", "llama-copy", "--out", str(tmp_path / "b")]) == 0
    assert "speculation: 100% accepted" in capsys.readouterr().err
