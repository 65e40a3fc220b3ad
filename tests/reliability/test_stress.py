"""8 threads x 50 greedy requests per backend on real models: all complete, each equals the sequential answer,
also while the LRU (by count, or by bytes) evicts the models the threads are using."""

from __future__ import annotations

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
