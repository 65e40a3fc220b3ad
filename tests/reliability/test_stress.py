"""8 threads x 50 greedy requests per backend on real models: all complete, each equals the sequential answer,
also while the LRU (by count, or by bytes) evicts the models the threads are using, and while unloads and config
reloads interleave with requests and streams."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from muai_core import ModelManager

PROMPTS = ["Hello world", "The capital of France is", "muai runs", "0 1 2 3", "Paris"]
BACKENDS = ["pytorch", "openvino", "numpy"]


def hammer(manager: ModelManager, requests: list[tuple[str, str, int]]) -> None:
    expected = {r: manager.generate(r[0], r[1], max_new_tokens=r[2]) for r in sorted(set(requests))}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: manager.generate(r[0], r[1], max_new_tokens=r[2]), requests))
    assert answers == [expected[r] for r in requests]
    assert manager.performance_monitor.fallback_events() == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_threads_fifty_requests_each(store, make_manager, backend):
    manager = make_manager(store / "models", store / "openvino", default=backend)
    hammer(manager, [("tiny-llama", PROMPTS[i % len(PROMPTS)], 2 + i % 7) for i in range(8 * 50)])
    assert manager.get_model("tiny-llama").backend_name == backend


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bound", ["count", "bytes"])
def test_threads_survive_eviction_of_the_model_they_use(store, make_manager, backend, bound):
    manager = make_manager(store / "models", store / "openvino", default=backend)
    sizes = [manager.load_model(name).memory_bytes() for name in ("gpt2", "tiny-llama")]
    assert all(sizes), "every backend reports memory_bytes"
    limit = {"max_cached_models": 1} if bound == "count" else {"max_cache_bytes": max(sizes) + min(sizes) - 1}
    bounded = ModelManager(config_path=manager.config_path, monitor=manager.performance_monitor, **limit)
    hammer(bounded, [(("gpt2", "tiny-llama")[i % 2], PROMPTS[i % len(PROMPTS)], 4) for i in range(8 * 6)])
    assert len(bounded.loaded_models()) == 1


@pytest.mark.parametrize("backend", ["openvino", "pytorch"])
def test_requests_streams_unloads_and_config_reloads_interleave_without_a_deadlock(store, make_manager, backend):
    """For a few seconds: greedy requests, streams left early, unloads and config reloads from 6 threads at once.

    Every thread finishes (bounded wait), every complete answer equals the sequential one, nothing else fails.
    """
    manager = make_manager(store / "models", store / "openvino", default=backend)
    expected = {p: manager.generate("tiny-llama", p, max_new_tokens=12, ignore_eos=True) for p in PROMPTS}
    deadline = time.monotonic() + 6
    errors: list[BaseException] = []
    counts = {"answers": 0, "streams": 0, "unloads": 0}

    def requests(offset: int) -> None:
        for i in itertools.count(offset):
            if time.monotonic() > deadline:
                return
            prompt = PROMPTS[i % len(PROMPTS)]
            if i % 3:
                assert manager.generate("tiny-llama", prompt, max_new_tokens=12, ignore_eos=True) == expected[prompt]
                counts["answers"] += 1
            else:
                with manager.stream("tiny-llama", prompt, max_new_tokens=40, ignore_eos=True) as stream:
                    for count, _ in enumerate(stream, 1):
                        if count == 3:
                            break
                counts["streams"] += 1

    def churn() -> None:
        while time.monotonic() < deadline:
            time.sleep(0.3)
            manager.unload_model("tiny-llama")
            counts["unloads"] += 1
            manager.reload_config()

    def guarded(work, *args) -> None:
        try:
            work(*args)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(requests, n)) for n in range(5)]
    threads.append(threading.Thread(target=guarded, args=(churn,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck: deadlock"
    assert errors == []
    assert counts["answers"] > 5 and counts["streams"] > 2 and counts["unloads"] > 3, counts
    assert manager.performance_monitor.fallback_events() == []
