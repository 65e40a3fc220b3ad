"""8 threads x 50 greedy requests per backend on real models: all complete, each equals the sequential answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from muai_core import ModelManager, PerformanceMonitor

PROMPTS = ["Hello world", "The capital of France is", "muai runs", "0 1 2 3", "Paris"]


@pytest.mark.parametrize("backend", ["pytorch", "openvino"])
def test_eight_threads_fifty_requests_each(write_config, backend):
    manager = ModelManager(backend=backend, config_path=write_config(), monitor=PerformanceMonitor())
    requests = [(PROMPTS[i % len(PROMPTS)], 2 + i % 7) for i in range(8 * 50)]
    expected = {r: manager.generate("tiny-llama", r[0], max_new_tokens=r[1]) for r in sorted(set(requests))}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: manager.generate("tiny-llama", r[0], max_new_tokens=r[1]), requests))
    assert answers == [expected[r] for r in requests]
    assert manager.get_model("tiny-llama").backend_name == backend
    assert manager.performance_monitor.fallback_events() == []


@pytest.mark.parametrize("backend", ["pytorch", "openvino"])
def test_threads_survive_eviction_of_the_model_they_use(write_config, backend):
    manager = ModelManager(
        backend=backend, max_cached_models=1, config_path=write_config(), monitor=PerformanceMonitor()
    )
    requests = [(("gpt2", "tiny-llama")[i % 2], PROMPTS[i % len(PROMPTS)]) for i in range(8 * 6)]
    expected = {r: manager.generate(r[0], r[1], max_new_tokens=4) for r in sorted(set(requests))}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: manager.generate(r[0], r[1], max_new_tokens=4), requests))
    assert answers == [expected[r] for r in requests]
    assert manager.performance_monitor.fallback_events() == []
