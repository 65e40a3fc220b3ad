"""Routing one call elsewhere (``UnsupportedRequest``) and resuming a failed generation on the next backend."""

from __future__ import annotations

import pytest

from muai_core.contracts import Attempt
from muai_core.errors import InferenceError, UnsupportedRequest
from muai_core.testing import CountingBackend
from tests.conftest import write_config


def test_an_unsupported_call_runs_on_the_next_backend_and_the_model_stays(make_manager, add_faulty, counting):
    faulty = add_faulty(fail_on=frozenset(), unsupported=frozenset({"generate:do_sample"}))
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="faulty")
    assert manager.generate_result("m", "ab", max_new_tokens=3).backend == "faulty"
    for _ in range(2):
        sampled = manager.generate_result("m", "ab", max_new_tokens=3, do_sample=True, seed=1)
        assert (sampled.text, sampled.backend) == ("abcde", "counting")
    assert manager.generate_result("m", "ab", max_new_tokens=3).backend == "faulty", "the model moved"
    assert manager.get_model("m").backend_name == "faulty" and len(counting.loaded) == 1, "one helper, reused"
    [*_, detour] = manager.explain("m")
    assert detour == Attempt("faulty", "generate", "unsupported", "faulty cannot serve this generate call (injected)")
    assert [a.outcome for a in manager.explain("m")].count("unsupported") == 1
    monitor = manager.performance_monitor
    assert monitor.fallback_events() == []
    events = monitor.detour_events("m")
    assert [(e.from_backend, e.to_backend, e.stage) for e in events] == [("faulty", "counting", "generate")] * 2
    assert manager.unload_model("m") and faulty.loaded[0].released and counting.loaded[0].released


def test_an_unsupported_forward_runs_on_a_helper(make_manager, add_faulty):
    add_faulty(fail_on=frozenset(), unsupported=frozenset({"forward"}))
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="faulty")
    logits = manager.forward("m", {"input_ids": [[1, 2]]})["logits"]
    assert logits[0, -1].argmax() == 3 and manager.get_model("m").backend_name == "faulty"


def test_an_unsupported_call_with_no_backend_left_raises_it(make_manager, add_faulty):
    add_faulty(fail_on=frozenset(), unsupported=frozenset({"generate"}))
    write_config("backend: {priority: [faulty]}")
    manager = make_manager(backend="faulty")
    with pytest.raises(UnsupportedRequest, match="cannot serve this generate call"):
        manager.generate("m", "ab", max_new_tokens=2)
    assert manager.get_model("m").backend_name == "faulty"


def test_a_helper_counts_in_the_byte_bound(make_manager, add_faulty):
    add_faulty(fail_on=frozenset(), unsupported=frozenset({"generate"}))
    write_config("{max_cache_bytes: 3000, backend: {priority: [counting]}}")
    manager = make_manager(backend="faulty")
    manager.load_model("other")
    manager.generate("m", "ab", max_new_tokens=2)  # 1024 bytes on faulty + 1024 on its counting helper
    assert manager.loaded_models() == ["m"], "'other' should have been evicted to make room for the helper"


def test_a_failing_helper_is_dropped_and_the_call_goes_on_past_it(make_manager, add_faulty, counting):
    add_faulty(fail_on=frozenset(), unsupported=frozenset({"generate"}))
    broken = add_faulty("broken", fail_on=frozenset({"generate"}))
    write_config("backend: {priority: [broken, counting]}")
    manager = make_manager(backend="faulty")
    assert manager.generate_result("m", "ab", max_new_tokens=2).backend == "counting"
    assert broken.loaded[0].released and manager.get_model("m").backend_name == "faulty"
    assert [(a.backend, a.outcome) for a in manager.explain("m")[-2:]] == [
        ("faulty", "unsupported"),
        ("broken", "failed"),
    ]


def test_a_generation_failing_midway_resumes_on_the_next_backend(make_manager, add_faulty, monitor):
    add_faulty(fail_on=frozenset({"generate"}), fail_after=3)
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="faulty")
    result = manager.generate_result("m", "ab", max_new_tokens=6, ignore_eos=True)
    assert (result.text, result.token_ids, result.backend) == ("abcdefgh", tuple(b"cdefgh"), "counting")
    [resumed] = monitor.inferences("counting")
    assert resumed.tokens_generated == 3, "counting generated from the start instead of resuming"
    assert [e.stage for e in monitor.fallback_events("m")] == ["generate"]


def test_a_stream_failing_midway_resumes_without_repeating_text(make_manager, add_faulty):
    add_faulty(fail_on=frozenset({"generate"}), fail_after=2)
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="faulty")
    stream = manager.stream("m", "a", max_new_tokens=5)
    pieces = list(stream)
    assert pieces == ["b", "c", "d", "e", "f"] and "".join(pieces) == stream.result.completion
    assert stream.result.backend == "counting"


def test_a_stream_cannot_resume_on_a_backend_that_tokenises_differently(make_manager, registry, add_faulty):
    add_faulty(fail_on=frozenset({"generate"}), fail_after=2)
    registry.register(CountingBackend("latin", tokenizer="latin-1 bytes"), "latin")
    write_config("backend: {priority: [latin]}")
    manager = make_manager(backend="faulty")
    pieces = []
    with pytest.raises(InferenceError, match="after streaming 2 piece.*'latin' tokenises differently"):
        pieces.extend(manager.stream("m", "a", max_new_tokens=5))
    assert pieces == ["b", "c"]
    assert manager.generate_result("m", "a", max_new_tokens=5).text == "abcdef", "unstreamed: starts again"
