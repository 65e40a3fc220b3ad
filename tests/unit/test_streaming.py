"""Iterator and async streaming, cancellation, batches and unloading at exit, on the counting backend."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from muai_core.decoding import decode_loop
from muai_core.errors import InferenceError, InvalidInputError
from muai_core.hookspecs import hookimpl
from muai_core.testing import CountingBackend
from muai_core.testing.backends import CONTEXT, _decode, _next_byte_logits
from tests.conftest import write_config

#: Tokens a request may generate when nothing stops it: about 8 s on the slow backend.
LONG = 2000
#: Well under the time LONG tokens take: a stopped generation returns within it.
PROMPT_RETURN_S = 2.0


class SlowCounting(CountingBackend):
    """The counting model, taking ``delay`` seconds per token and failing at token ``fail_at`` if set."""

    def __init__(self, name: str = "slow", delay: float = 0.004, fail_at: int | None = None) -> None:
        super().__init__(name)
        self.delay, self.fail_at = delay, fail_at

    @hookimpl
    def muai_generate(self, model, request):
        steps = 0

        def step(ids):
            nonlocal steps
            steps += 1
            if steps == self.fail_at:
                raise RuntimeError("engine failed mid-generation")
            time.sleep(self.delay)
            return _next_byte_logits(ids)

        return decode_loop(step, list(request.prompt.encode()), request, _decode, context_length=CONTEXT)


@pytest.fixture
def slow(registry) -> SlowCounting:
    backend = SlowCounting()
    registry.register(backend, "slow")
    return backend


def test_stream_yields_the_completion_piece_by_piece_then_the_result(make_manager):
    manager = make_manager()
    stream = manager.stream("m", "ab", max_new_tokens=4)
    pieces = []
    for piece in stream:
        assert stream.result is None
        pieces.append(piece)
    assert pieces == ["c", "d", "e", "f"]
    assert stream.result.completion == "cdef" and stream.result.text == "abcdef"
    assert stream.result.token_ids == tuple(b"cdef") and stream.result.finish_reason == "length"
    assert stream.result.backend == "counting" and len(stream.result.token_latencies_s) == 3


def test_leaving_a_stream_stops_generation_and_frees_the_model_at_once(make_manager, slow):
    manager = make_manager(backend="slow")
    started = time.perf_counter()
    stream = manager.stream("m", "a", max_new_tokens=LONG)
    for count, _ in enumerate(stream, 1):
        if count == 2:
            break
    assert time.perf_counter() - started < PROMPT_RETURN_S
    assert stream.result.finish_reason == "stopped" and stream.result.new_tokens <= 3
    assert manager.unload_model("m") and slow.loaded[0].released, "the model is still leased by the stream"


def test_an_error_in_generation_is_raised_in_the_loop(make_manager, add_faulty):
    add_faulty("broken", fail_on=frozenset({"generate"}))
    manager = make_manager(backend="broken", backend_config={"enable_fallback": False})
    with pytest.raises(InferenceError, match="injected fault"):
        list(manager.stream("m", "a", max_new_tokens=3))


def test_a_backend_failing_mid_stream_resumes_on_the_next_without_repeating_text(make_manager, registry, counting):
    registry.register(SlowCounting("flaky", delay=0, fail_at=3), "flaky")
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="flaky")
    stream = manager.stream("m", "a", max_new_tokens=5)
    assert list(stream) == ["b", "c", "d", "e", "f"] and stream.result.token_ids == tuple(b"bcdef")
    assert stream.result.backend == "counting" and len(counting.loaded) == 1


def test_a_stream_is_checked_before_it_starts(make_manager):
    manager = make_manager()
    for kwargs in ({"streamer": print}, {"temperature": -1.0}):
        with pytest.raises(InvalidInputError):
            manager.stream("m", "a", **kwargs)
    with pytest.raises(InvalidInputError, match="one prompt"):
        manager.stream("m", ["a", "b"])
    assert manager.loaded_models() == []


def test_agenerate_does_not_block_the_event_loop(make_manager):
    manager = make_manager()
    in_flight, answered = threading.Event(), threading.Event()

    def streamer(piece):
        in_flight.set()
        answered.wait(5)  # only another coroutine can set it: it times out if the loop is blocked

    async def other_coroutine():
        while not in_flight.is_set():
            await asyncio.sleep(0.001)
        answered.set()
        return time.perf_counter()

    async def main():
        started = time.perf_counter()
        text, _ = await asyncio.gather(
            manager.agenerate("m", "ab", max_new_tokens=2, streamer=streamer), other_coroutine()
        )
        return text, time.perf_counter() - started

    text, seconds = asyncio.run(main())
    assert text == manager.generate("m", "ab", max_new_tokens=2) and seconds < PROMPT_RETURN_S


def test_cancelling_agenerate_stops_generation_and_frees_the_model(make_manager, slow):
    manager = make_manager(backend="slow")
    pieces = []

    started = time.perf_counter()
    cancel_once_streaming(lambda: manager.agenerate("m", "a", max_new_tokens=LONG, streamer=pieces.append), pieces)
    assert time.perf_counter() - started < PROMPT_RETURN_S and len(pieces) < 10
    assert manager.unload_model("m") and slow.loaded[0].released, "the model is still leased after the cancel"


def test_astream_yields_the_pieces_and_the_result(make_manager):
    manager = make_manager()

    async def main():
        stream = manager.astream("m", "ab", max_new_tokens=3, return_full_text=False)
        return [piece async for piece in stream], stream.result

    pieces, result = asyncio.run(main())
    assert pieces == ["c", "d", "e"] and result.text == "cde" and result.backend == "counting"


def test_cancelling_an_astream_consumer_stops_generation_and_frees_the_model(make_manager, slow):
    manager = make_manager(backend="slow")
    pieces = []

    async def consume():
        async for piece in manager.astream("m", "a", max_new_tokens=LONG):
            pieces.append(piece)

    started = time.perf_counter()
    cancel_once_streaming(consume, pieces)
    assert time.perf_counter() - started < PROMPT_RETURN_S
    assert manager.unload_model("m") and slow.loaded[0].released


def test_closing_an_astream_early_frees_the_model(make_manager, slow):
    manager = make_manager(backend="slow")

    async def main():
        async with manager.astream("m", "a", max_new_tokens=LONG) as stream:
            async for _ in stream:
                break
        return stream.result

    started = time.perf_counter()
    result = asyncio.run(main())
    assert time.perf_counter() - started < PROMPT_RETURN_S and result.finish_reason == "stopped"
    assert manager.unload_model("m") and slow.loaded[0].released


def test_a_batch_returns_each_prompts_own_answer_in_order(make_manager):
    manager = make_manager()
    prompts = ["ab", "x", "hello"]
    alone = [manager.generate_result("m", p, max_length=6) for p in prompts]
    batch = manager.generate_result("m", prompts, max_length=6)
    assert [r.text for r in batch] == [r.text for r in alone] == manager.generate("m", prompts, max_length=6)
    assert [r.new_tokens for r in batch] == [4, 5, 1] and all(r.finish_reason == "length" for r in batch)
    assert asyncio.run(manager.agenerate("m", prompts, max_length=6)) == [r.text for r in alone]


@pytest.mark.parametrize("bad", ["", 5, "\ud800"], ids=["empty", "not-text", "surrogate"])
def test_a_bad_prompt_fails_the_batch_by_its_index_before_any_work(make_manager, counting, bad):
    manager = make_manager()
    with pytest.raises(InvalidInputError, match=r"prompts\[2\] of the batch") as caught:
        manager.generate("m", ["a", "b", bad], max_new_tokens=2)
    assert caught.value.hint and counting.loaded == []
    with pytest.raises(InvalidInputError, match="no prompts"):
        manager.generate("m", [])


def test_models_are_unloaded_at_exit_and_managers_still_collected(tmp_path):
    script = textwrap.dedent(
        """
        from muai_core import ModelManager
        from muai_core.plugins import PluginRegistry
        from muai_core.testing import CountingBackend

        class Telling(CountingBackend):
            def muai_unload_model(self, model):
                print("unloaded", model.name, flush=True)

        Telling.muai_unload_model = __import__("muai_core").hookimpl(Telling.muai_unload_model)
        registry = PluginRegistry()
        registry.register(Telling(), "counting")
        manager = ModelManager(backend="counting", registry=registry)
        manager.generate("kept", "a", max_new_tokens=1)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["unloaded kept"]


def test_a_manager_is_collected_with_its_models(make_manager, counting):
    manager = make_manager()
    manager.generate("m", "a", max_new_tokens=1)
    ref = weakref.ref(manager)
    del manager
    gc.collect()
    assert ref() is None


def cancel_once_streaming(work, pieces: list[str]) -> None:
    """Run the coroutine ``work()`` as a task, cancel it once ``pieces`` has one, and check it was cancelled."""

    async def main():
        task = asyncio.create_task(work())
        while not pieces:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
