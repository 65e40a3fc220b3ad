"""ModelManager: cache, switching, config reload, generation, forward and stats."""

from __future__ import annotations

import numpy as np
import pytest

from muai_core import ModelManager
from muai_core.errors import ConfigurationError, InvalidInputError, ModelLoadError
from tests.conftest import write_config


def test_lru_evicts_through_the_owning_backend(make_manager, counting):
    manager = make_manager(max_cached_models=2)
    first = manager.load_model("a")
    manager.load_model("b")
    manager.load_model("a")  # a is now the most recent
    manager.load_model("c")
    assert manager.loaded_models() == ["a", "c"]
    released = {m.name: m.released for m in counting.loaded}
    assert released == {"a": False, "b": True, "c": False}
    assert manager.load_model("a") is first


def test_loading_with_another_backend_switches_mid_session(make_manager, registry, add_faulty):
    other = add_faulty("other", fail_on=frozenset())
    manager = make_manager()
    before = manager.load_model("m")
    after = manager.load_model("m", backend_override="other")
    assert (before.backend_name, after.backend_name) == ("counting", "other")
    assert before.handle.released and not other.loaded[0].released
    assert manager.loaded_models() == ["m"]


def test_generate_loads_on_demand_and_returns_prompt_plus_completion(make_manager):
    manager = make_manager()
    assert manager.generate("m", "ab", max_length=5) == "abcde"
    assert manager.generate("m", "ab", max_new_tokens=2, return_full_text=False) == "cd"


def test_streaming_sees_every_piece_and_can_stop(make_manager):
    manager = make_manager()
    pieces: list[str] = []
    result = manager.generate_result("m", "a", max_new_tokens=5, streamer=pieces.append)
    assert "".join(pieces) == result.completion == "bcdef"
    stopped = manager.generate_result("m", "a", max_new_tokens=5, streamer=lambda piece: piece != "c")
    assert (stopped.completion, stopped.finish_reason) == ("bc", "stopped")


def test_forward_returns_float32_logits_of_batch_seq_vocab(make_manager):
    logits = make_manager().forward("m", {"input_ids": np.array([[1, 2, 3], [4, 5, 6]])})["logits"]
    assert logits.shape == (2, 3, 256) and logits.dtype == np.float32
    assert logits[1, 2].argmax() == 7


@pytest.mark.parametrize("inputs", ["text", {"ids": [1]}, {"input_ids": [[1, 999]]}, {"input_ids": [[]]}])
def test_forward_rejects_malformed_inputs(make_manager, inputs):
    with pytest.raises(InvalidInputError):
        make_manager().forward("m", inputs)


def test_get_model_of_an_unloaded_model_says_how_to_load_it(make_manager):
    with pytest.raises(ModelLoadError, match=r"call load_model\('m'\) first"):
        make_manager().get_model("m")


def test_unload_is_false_for_an_unknown_model(make_manager):
    assert make_manager().unload_model("nothing") is False


@pytest.mark.parametrize(
    "kwargs",
    [{"device": ""}, {"max_cached_models": 0}, {"max_cached_models": True}, {"backend_config": ["x"]}],
)
def test_constructor_rejects_bad_arguments(make_manager, kwargs):
    with pytest.raises(ConfigurationError):
        make_manager(**kwargs)


def test_config_reload_applies_to_later_loads(make_manager, add_faulty):
    add_faulty("other", fail_on=frozenset())
    manager = ModelManager(registry=make_manager().registry, monitor=None)
    assert manager.backend_type == "pytorch"
    write_config("backend: {default: other}")
    manager.reload_config()
    assert manager.backend_type == "other"
    assert manager.load_model("m").backend_name == "other"


def test_config_naming_an_unknown_backend_is_rejected(make_manager):
    write_config("model_overrides: {m: tensorflow}")
    with pytest.raises(ConfigurationError, match="model_overrides.m"):
        make_manager()


def test_backend_config_goes_to_the_managers_backend_only(make_manager, add_faulty):
    add_faulty()
    write_config("backend: {counting: {device: x1}, faulty: {device: y1}}")
    manager = make_manager(backend_config={"device": "override"})
    plan = manager.plan("m", backend_override=["faulty", "counting"])
    assert plan.settings_for("counting")["device"] == "override"
    assert plan.settings_for("faulty")["device"] == "y1"


def test_stats_and_comparison_span_managers_sharing_a_monitor(make_manager, add_faulty):
    add_faulty("other", fail_on=frozenset())
    first, second = make_manager(), make_manager(backend="other")
    first.generate("m", "a", max_new_tokens=4)
    second.generate("m", "a", max_new_tokens=8)
    stats = first.get_performance_stats("m")
    assert set(stats["backends"]) == {"counting", "other"}
    assert stats["backends"]["other"]["total_tokens"] == 8
    comparison = first.compare_backends("counting", "other")
    assert comparison["throughput_improvement"] > 0
    assert comparison["counting_stats"]["sample_count"] == 1


def test_model_info_carries_backend_metadata(make_manager):
    manager = make_manager(device="cpu")
    manager.load_model("m")
    info = manager.get_model_info("m")
    assert info["backend_type"] == "counting" and info["is_fallback"] is False
    assert info["model_info"]["device"] == "cpu" and info["load_time"] >= 0


def test_available_backends_exclude_unavailable_ones(make_manager, add_faulty):
    add_faulty("down", fail_on=frozenset({"available"}))
    assert make_manager().get_available_backends() == ["counting"]


def test_an_error_raised_by_the_streamer_reaches_the_caller_without_a_fallback(make_manager, add_faulty, monitor):
    add_faulty("other", fail_on=frozenset())
    write_config("backend: {priority: [other]}")
    manager = make_manager()
    pieces: list[str] = []
    mistake = KeyError("the caller's own bug")

    def streamer(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 2:
            raise mistake

    with pytest.raises(KeyError) as info:
        manager.generate("m", "a", max_new_tokens=5, streamer=streamer)
    assert info.value is mistake and pieces == ["b", "c"]
    assert manager.get_model("m").backend_name == "counting" and monitor.fallback_events() == []
