"""The resolver's chain: fallback at load and at run time, attempts, events, and the disabled path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from muai_core.errors import (
    BackendInitializationError,
    ConfigurationError,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
)
from muai_core.hookspecs import hookimpl
from tests.conftest import write_config


def test_load_failure_falls_back_with_warning_event_and_attempts(make_manager, add_faulty, monitor, caplog):
    add_faulty()
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="faulty")
    with caplog.at_level(logging.WARNING, logger="muai_core.fallback"):
        loaded = manager.load_model("m")
    assert loaded.backend_name == "counting" and loaded.is_fallback
    assert [(a.backend, a.outcome) for a in loaded.attempts] == [("faulty", "failed"), ("counting", "ok")]
    assert "injected fault" in loaded.attempts[0].reason
    assert "falling back to counting" in caplog.text
    [event] = monitor.fallback_events("m")
    assert (event.from_backend, event.to_backend, event.stage) == ("faulty", "counting", "load")


def test_disabled_fallback_raises_our_error_with_the_original_as_cause(make_manager, add_faulty, monitor):
    add_faulty()
    write_config("backend: {priority: [counting], faulty: {enable_fallback: false}}")
    with pytest.raises(ModelLoadError) as info:
        make_manager(backend="faulty").load_model("m")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "backend 'faulty' could not load 'm'" in str(info.value)
    assert monitor.fallback_events() == []


def test_generate_failure_reloads_on_the_next_backend_and_releases_the_failed_one(make_manager, add_faulty, monitor):
    faulty = add_faulty(fail_on=frozenset({"generate"}))
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="faulty")
    text = manager.generate("m", "ab", max_new_tokens=3)
    assert text == "abcde"
    assert faulty.loaded[0].released is True
    assert manager.get_model("m").backend_name == "counting"
    assert [e.stage for e in monitor.fallback_events("m")] == ["generate"]
    assert [(a.backend, a.stage, a.outcome) for a in manager.explain("m")] == [
        ("faulty", "load", "ok"),
        ("faulty", "generate", "failed"),
        ("counting", "load", "ok"),
    ]


def test_forward_failure_with_fallback_disabled_is_an_inference_error(make_manager, add_faulty):
    add_faulty(fail_on=frozenset({"forward"}), error=ValueError("bad kernel"))
    write_config("backend: {priority: [counting], faulty: {enable_fallback: false}}")
    with pytest.raises(InferenceError) as info:
        make_manager(backend="faulty").forward("m", {"input_ids": [[1, 2]]})
    assert isinstance(info.value.__cause__, ValueError)
    assert "enable_fallback: false" in str(info.value)


def test_unavailable_and_not_installed_backends_are_skipped_with_reasons(make_manager, add_faulty):
    add_faulty(fail_on=frozenset({"available"}))
    write_config("backend: {priority: [openvino, faulty, counting]}")
    loaded = make_manager(backend="faulty").load_model("m")
    outcomes = [(a.backend, a.outcome) for a in loaded.attempts]
    assert outcomes == [("faulty", "unavailable"), ("openvino", "not installed"), ("counting", "ok")]
    assert "pip install muai-openvino" in loaded.attempts[1].reason


def test_every_backend_failing_summarises_the_attempts(make_manager, add_faulty):
    add_faulty()
    add_faulty("faulty2", error=OSError("disk on fire"))
    write_config("backend: {priority: [faulty2]}")
    with pytest.raises(ModelLoadError) as info:
        make_manager(backend="faulty").load_model("m")
    message = str(info.value)
    assert "faulty: failed (RuntimeError: injected fault)" in message
    assert "faulty2: failed (OSError: disk on fire)" in message
    assert "muai explain m" in message


def test_bad_input_never_triggers_a_fallback(make_manager, add_faulty, monitor):
    add_faulty(fail_on=frozenset({"generate"}), error=InvalidInputError("prompt too long"))
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="faulty")
    with pytest.raises(InvalidInputError):
        manager.generate("m", "hello")
    assert manager.get_model("m").backend_name == "faulty"
    assert monitor.fallback_events() == []


def test_configuration_errors_from_a_backend_are_not_hidden_by_fallback(make_manager, add_faulty):
    add_faulty(error=ConfigurationError("backend.faulty.device 'banana' is not a device"))
    write_config("backend: {priority: [counting]}")
    with pytest.raises(ConfigurationError, match="banana"):
        make_manager(backend="faulty").load_model("m")


def test_unavailable_backend_without_fallback_is_an_initialization_error(make_manager, add_faulty):
    add_faulty(fail_on=frozenset({"available"}))
    write_config("backend: {faulty: {enable_fallback: false}}")
    with pytest.raises(BackendInitializationError, match="unavailable"):
        make_manager(backend="faulty").load_model("m")


def test_per_call_chain_overrides_config(make_manager, add_faulty):
    add_faulty()
    loaded = make_manager().load_model("m", backend_override=["faulty", "counting"])
    assert [a.backend for a in loaded.attempts] == ["faulty", "counting"]


def released_models_in_cache(manager) -> list[str]:
    return [name for name in manager.loaded_models() if manager.get_model(name).handle.released]


def test_a_failed_reload_drops_the_failed_model_from_the_cache(make_manager, add_faulty):
    faulty = add_faulty(fail_on=frozenset({"generate"}))
    add_faulty("faulty2")
    write_config("backend: {priority: [faulty2]}")
    manager = make_manager(backend="faulty")
    manager.load_model("m")
    with pytest.raises(ModelLoadError) as info:
        manager.generate("m", "ab")
    assert faulty.loaded[0].released and manager.loaded_models() == []
    message = str(info.value)
    assert "faulty: loaded, then failed to generate (RuntimeError: injected fault)" in message
    assert "faulty2: failed (RuntimeError: injected fault)" in message and "ok ()" not in message
    assert "no backend could run 'm'" in message


@pytest.mark.parametrize(
    ("config", "kwargs", "error"),
    [
        ("backend: {priority: [faulty2]}", {}, InferenceError),  # the fallback model fails too, at the chain's end
        ("backend: {priority: [counting]}", {"max_length": 1}, InvalidInputError),  # the caller's error, there
        (
            "{max_cache_bytes: 4096, backend: {priority: [counting], counting: {memory_bytes: 8192}}}",
            {},
            ModelLoadError,
        ),
    ],
    ids=["fallback-fails", "bad-input-on-fallback", "fallback-too-big"],
)
def test_no_failure_path_leaves_a_released_model_in_the_cache(
    make_manager, add_faulty, counting, config, kwargs, error
):
    """The failed model is released and not cached; a fallback model is either cached or released, never leaked."""
    backends = [add_faulty(fail_on=frozenset({"generate"})), add_faulty("faulty2", fail_on=frozenset({"generate"}))]
    write_config(config)
    manager = make_manager(backend="faulty")
    with pytest.raises(error):
        manager.generate("m", "ab", **kwargs)
    assert backends[0].loaded[0].released and released_models_in_cache(manager) == []
    kept = [manager.get_model(name).backend_name for name in manager.loaded_models()]
    assert kept == ([] if error is ModelLoadError else [manager.plan("m").chain[1]])
    held = [record for backend in (*backends, counting) for record in backend.loaded if not record.released]
    assert len(held) == len(kept)


def test_a_fallback_model_over_the_byte_bound_is_refused_like_a_load(make_manager, add_faulty, counting):
    add_faulty(fail_on=frozenset({"generate"}))
    write_config("{max_cache_bytes: 4096, backend: {priority: [counting], counting: {memory_bytes: 8192}}}")
    manager = make_manager(backend="faulty")
    with pytest.raises(ModelLoadError, match="more than max_cache_bytes"):
        manager.generate("m", "ab")
    assert manager._cache.total_bytes <= 4096 and counting.loaded[0].released


def test_a_failure_is_reported_once_when_no_backend_can_take_over(make_manager, add_faulty, caplog):
    add_faulty()
    add_faulty("faulty2", error=OSError("disk on fire"))
    write_config("backend: {priority: [faulty2]}")
    with caplog.at_level(logging.WARNING, logger="muai_core.fallback"), pytest.raises(ModelLoadError) as info:
        make_manager(backend="faulty").load_model("m")
    assert "injected fault" not in caplog.text and str(info.value).count("injected fault") == 1


@pytest.mark.parametrize("local", [False, True])
def test_a_model_with_no_local_directory_is_reported_as_not_found(make_manager, add_faulty, local):
    add_faulty()
    add_faulty("faulty2")
    write_config("backend: {priority: [faulty2]}")
    if local:
        Path("models/m").mkdir(parents=True)
    with pytest.raises(ModelLoadError) as info:
        make_manager(backend="faulty").load_model("m")
    not_found = "model 'm' not found locally (no directory of that name here or in models, "
    assert (not_found in str(info.value)) is not local
    assert str(info.value).startswith("no backend could load 'm': faulty: failed") is local


def test_a_model_that_is_not_found_is_answered_with_what_is_installed(make_manager, add_faulty):
    add_faulty()
    install_models(*("beta", "alpha"))
    with pytest.raises(ModelLoadError) as info:
        make_manager(backend="faulty").load_model("gamma")
    assert info.value.hint.startswith("installed: alpha, beta; or pass a model directory")
    assert "`muai explain gamma` shows each attempt" in info.value.hint


def test_a_known_model_that_is_not_installed_names_its_command_before_any_backend_runs(
    registry, make_manager, counting
):
    class Catalogue:
        @hookimpl
        def muai_known_models(self):
            return {"abacus-1b": "muai fetch abacus-1b"}

    registry.register(Catalogue(), "catalogue")
    manager = make_manager()
    with pytest.raises(ModelLoadError, match=r"model 'abacus-1b' is not installed \(looked in models, ") as info:
        manager.load_model("abacus-1b")
    assert info.value.hint == "get it with: muai fetch abacus-1b"
    assert counting.loaded == []


def test_a_misspelled_model_name_is_answered_with_the_close_ones(make_manager, add_faulty):
    add_faulty()
    install_models(*("smollm2-135m", "gpt2"))
    with pytest.raises(ModelLoadError) as info:
        make_manager(backend="faulty").load_model("smollm-135m")
    assert info.value.hint.startswith("did you mean smollm2-135m? installed: gpt2, smollm2-135m; ")
    with pytest.raises(ModelLoadError) as info:
        make_manager(backend="faulty").load_model("zzz")
    assert "did you mean" not in info.value.hint


def install_models(*names: str) -> None:
    """Model folders under models/ (a config.json each): what muai lists as installed."""
    for name in names:
        Path(f"models/{name}").mkdir(parents=True)
        Path(f"models/{name}/config.json").write_text("{}")
