"""The resolver's chain: fallback at load and at run time, attempts, events, and the disabled path."""

from __future__ import annotations

import logging

import pytest

from muai_core.errors import (
    BackendInitializationError,
    ConfigurationError,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
)
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
