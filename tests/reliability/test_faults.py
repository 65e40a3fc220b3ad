"""Faults injected mid-generation and at compile time: the request completes on the next backend, the
monitor records the hand-over, and the failed backend's model is released."""

from __future__ import annotations

import gc
import weakref

import pytest

from muai_core.errors import InferenceError, ModelLoadError


class FailsAfter:
    """Wraps a callable: the first ``calls`` calls go through, then each raises (fault injection)."""

    def __init__(self, real, calls: int) -> None:
        self.real, self.left = real, calls

    def __call__(self, *args, **kwargs):
        if self.left == 0:
            raise RuntimeError("injected fault in a decode step")
        self.left -= 1
        return self.real(*args, **kwargs)


def break_decode_step(backend: str, handle, after: int) -> object:
    """Make the engine fail at decode step ``after``; returns what must be freed once the model is released."""
    if backend == "openvino":
        request = handle.request
        handle.request = type("Request", (), {"__getattr__": lambda s, n: getattr(request, n)})()
        handle.request.infer = FailsAfter(request.infer, after)
        return handle.compiled
    if backend == "numpy":
        handle.network.run = FailsAfter(handle.network.run, after)
        return handle.network
    handle.model.forward = FailsAfter(handle.model.forward, after)
    return handle.model


@pytest.mark.parametrize(("backend", "other"), [("openvino", "pytorch"), ("numpy", "pytorch"), ("pytorch", "numpy")])
def test_a_fault_mid_generation_completes_on_the_next_backend(store, make_manager, backend, other):
    manager = make_manager(store / "models", store / "openvino", default=backend, fallback=True, then=other)
    handle = manager.load_model("tiny-llama").handle
    engine = weakref.ref(break_decode_step(backend, handle, after=3))
    del handle
    result = manager.generate_result("tiny-llama", "Hello there", max_new_tokens=8, ignore_eos=True)
    assert len(result.token_ids) == 8 and manager.get_model("tiny-llama").backend_name == other
    [event] = manager.performance_monitor.fallback_events()
    assert (event.from_backend, event.to_backend, event.stage) == (backend, other, "generate")
    assert "injected fault" in event.reason
    gc.collect()
    assert engine() is None, f"{backend} still holds the failed model"


def test_a_fault_mid_generation_without_fallback_is_an_inference_error(store, make_manager):
    manager = make_manager(store / "models", store / "openvino", default="openvino")
    break_decode_step("openvino", manager.load_model("gpt2").handle, after=2)
    with pytest.raises(InferenceError, match="failed to generate") as info:
        manager.generate("gpt2", "Hello", max_new_tokens=6, ignore_eos=True)
    assert isinstance(info.value.__cause__, RuntimeError) and manager.performance_monitor.fallback_events() == []


def test_a_compile_fault_falls_back_and_is_recorded(store, make_manager, monkeypatch):
    import openvino as ov

    def broken_compile(self, *args, **kwargs):
        raise RuntimeError("injected compile fault")

    monkeypatch.setattr(ov.Core, "compile_model", broken_compile)
    manager = make_manager(store / "models", store / "openvino", default="openvino", fallback=True)
    assert manager.generate("gpt2", "Hello", max_new_tokens=3)
    assert manager.get_model("gpt2").backend_name == "pytorch"
    [event] = manager.performance_monitor.fallback_events()
    assert (event.from_backend, event.stage) == ("openvino", "load") and "injected compile fault" in event.reason
    strict = make_manager(store / "models", store / "openvino", default="openvino")
    with pytest.raises(ModelLoadError, match="could not compile"):
        strict.load_model("gpt2")


def test_a_failed_reload_leaves_no_released_model_cached(store, make_manager, monkeypatch):
    import muai_pytorch.loading

    def broken_load(request):
        raise RuntimeError("injected load fault")

    manager = make_manager(store / "models", store / "openvino", default="openvino", fallback=True)
    engine = weakref.ref(break_decode_step("openvino", manager.load_model("gpt2").handle, after=2))
    monkeypatch.setattr(muai_pytorch.loading, "load", broken_load)
    with pytest.raises(ModelLoadError) as info:
        manager.generate("gpt2", "Hello", max_new_tokens=6, ignore_eos=True)
    message = str(info.value)
    assert "openvino: loaded, then failed to generate (RuntimeError: injected fault in a decode step)" in message
    assert "pytorch: failed (RuntimeError: injected load fault)" in message and message.count("injected") == 2
    assert manager.loaded_models() == []
    gc.collect()
    assert engine() is None, "openvino still holds the failed model"
    monkeypatch.undo()
    assert manager.generate("gpt2", "Hello", max_new_tokens=2) and manager.get_model("gpt2").backend_name == "openvino"


@pytest.mark.parametrize(("backend", "other"), [("openvino", "pytorch"), ("numpy", "pytorch"), ("pytorch", "numpy")])
def test_an_error_raised_by_the_streamer_reaches_the_caller_without_a_fallback(store, make_manager, backend, other):
    manager = make_manager(store / "models", store / "openvino", default=backend, fallback=True, then=other)
    pieces: list[str] = []

    def streamer(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            raise LookupError("the caller's own bug")

    with pytest.raises(LookupError, match="the caller's own bug"):
        manager.generate("tiny-llama", "Hello there", max_new_tokens=8, ignore_eos=True, streamer=streamer)
    assert len(pieces) == 3 and manager.performance_monitor.fallback_events() == []
    assert manager.get_model("tiny-llama").backend_name == backend


@pytest.mark.parametrize(("backend", "other"), [("openvino", "pytorch"), ("numpy", "pytorch"), ("pytorch", "numpy")])
def test_a_stream_failing_mid_generation_resumes_where_it_stopped(store, make_manager, backend, other):
    unbroken = make_manager(store / "models", store / "openvino", default=other)
    expected = unbroken.generate_result("tiny-llama", "Hello there", max_new_tokens=10, ignore_eos=True)
    manager = make_manager(store / "models", store / "openvino", default=backend, fallback=True, then=other)
    break_decode_step(backend, manager.load_model("tiny-llama").handle, after=4)
    stream = manager.stream("tiny-llama", "Hello there", max_new_tokens=10, ignore_eos=True)
    pieces = list(stream)
    assert stream.result.backend == other and stream.result.token_ids == expected.token_ids
    assert "".join(pieces) == stream.result.completion == expected.completion
    [resumed] = manager.performance_monitor.inferences(other)
    assert resumed.tokens_generated == 10 - 4, "the next backend started again instead of resuming"


def test_a_paged_kv_cache_that_cannot_grow_runs_that_call_on_pytorch_and_keeps_the_model(
    store, make_manager, monkeypatch
):
    from muai_openvino.paged import PagedCache

    manager = make_manager(store / "models", store / "openvino", default="openvino", fallback=True)
    assert manager.generate_result("gpt2", "Hello", max_new_tokens=2).backend == "openvino"
    real_reserve = PagedCache.reserve

    def reserve(self, request, blocks):
        if blocks > 1:  # the cache cannot grow past its first block (32 tokens)
            raise MemoryError("injected: no memory for the KV cache")
        return real_reserve(self, request, blocks)

    monkeypatch.setattr(PagedCache, "reserve", reserve)
    assert manager.generate_result("gpt2", "Hello", max_new_tokens=40, ignore_eos=True).backend == "pytorch"
    assert manager.generate_result("gpt2", "Hello", max_new_tokens=2).backend == "openvino"
    assert manager.get_model("gpt2").backend_name == "openvino"
    [*_, detour] = manager.explain("gpt2")
    assert (detour.backend, detour.outcome) == ("openvino", "unsupported") and "KV cache" in detour.reason
    assert manager.performance_monitor.fallback_events() == []
