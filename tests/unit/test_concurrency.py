"""Many threads on one manager: every request completes with the sequential answer, eviction included."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from muai_core import ModelManager
from muai_core.hookspecs import hookimpl
from muai_core.leases import Leases
from muai_core.testing import CountingBackend


def test_models_evicted_while_in_use_are_released_after_the_request(make_manager, counting):
    manager = make_manager(max_cached_models=1)
    started, finish = threading.Event(), threading.Event()
    streamed = []

    def slow_streamer(piece: str) -> None:
        streamed.append(piece)
        started.set()
        finish.wait(5)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(manager.generate, "a", "x", max_new_tokens=2, streamer=slow_streamer)
        assert started.wait(5)
        manager.load_model("b")  # evicts "a" while it generates
        first = counting.loaded[0]
        assert first.name == "a" and not first.released
        finish.set()
        assert running.result(5) == "xyz"
    assert first.released and manager.loaded_models() == ["b"]


def test_eight_threads_under_constant_eviction_get_sequential_answers(make_manager, counting):
    manager = make_manager(max_cached_models=1)
    requests = [(f"model-{i % 3}", chr(97 + i % 20), 1 + i % 5) for i in range(8 * 50)]
    expected = {r: manager.generate(r[0], r[1], max_new_tokens=r[2]) for r in sorted(set(requests))}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: manager.generate(r[0], r[1], max_new_tokens=r[2]), requests))
    assert answers == [expected[r] for r in requests]
    still_loaded = [m.name for m in counting.loaded if not m.released]
    assert still_loaded == manager.loaded_models() and len(counting.loaded) > 3  # evictions happened, none leaked
    assert manager.performance_monitor.fallback_events() == []


def test_leases_release_once_after_the_last_holder():
    released = []
    leases: Leases[CountingBackend] = Leases(released.append)
    item = CountingBackend()
    leases.acquire(item)
    leases.acquire(item)
    leases.retire(item)
    leases.release(item)
    assert released == []
    leases.release(item)
    assert released == [item]
    leases.retire(CountingBackend())
    assert len(released) == 2


def test_a_fallback_does_not_overwrite_a_model_replaced_meanwhile(make_manager, registry, counting):
    from muai_core.hookspecs import hookimpl
    from muai_core.testing import FaultyBackend
    from tests.conftest import write_config

    entered, go_on = threading.Event(), threading.Event()

    class BlockThenFail(FaultyBackend):
        @hookimpl
        def muai_generate(self, model, request):
            entered.set()
            go_on.wait(5)
            raise RuntimeError("failed after a while")

    blocking = BlockThenFail(fail_on=frozenset(), name="blocking")
    registry.register(blocking, "blocking")
    write_config("backend: {priority: [counting]}")
    manager = make_manager(backend="blocking")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(manager.generate, "m", "a", max_new_tokens=2)
        assert entered.wait(5)
        replacement = manager.load_model("m", backend_override="counting")
        go_on.set()
        assert running.result(5) == "abc"
    assert manager.get_model("m") is replacement and not replacement.handle.released
    assert blocking.loaded[0].released
    assert [m.released for m in counting.loaded] == [False, True]  # the replacement stays, the fallback's goes


class SlowToLoad(CountingBackend):
    """Loads model "big" only once ``release`` is set; every other model at once."""

    def __init__(self) -> None:
        super().__init__()
        self.loading, self.release = threading.Event(), threading.Event()

    @hookimpl
    def muai_load_model(self, request):
        if request.model_name == "big":
            self.loading.set()
            assert self.release.wait(10), "the test never let the load finish"
        return super().muai_load_model(request)


def test_a_loaded_model_answers_while_another_one_loads(muai_registry, monitor):
    slow = SlowToLoad()
    muai_registry.register(slow, "slow")
    manager = ModelManager(backend="slow", registry=muai_registry, monitor=monitor)
    assert manager.generate("small", "a", max_new_tokens=2) == "abc"
    with ThreadPoolExecutor(2) as pool:
        loading = pool.submit(manager.load_model, "big")
        assert slow.loading.wait(5)
        answer = pool.submit(manager.generate, "small", "x", max_new_tokens=2)
        try:
            assert answer.result(timeout=5) == "xyz", "a request to a loaded model waited for another model's load"
        finally:
            slow.release.set()
        assert loading.result(5).name == "big"
    assert sorted(manager.loaded_models()) == ["big", "small"]


def test_concurrent_loads_of_one_model_load_it_once(muai_registry, monitor):
    slow = SlowToLoad()
    muai_registry.register(slow, "slow")
    manager = ModelManager(backend="slow", registry=muai_registry, monitor=monitor)
    with ThreadPoolExecutor(3) as pool:
        loads = [pool.submit(manager.load_model, "big") for _ in range(3)]
        assert slow.loading.wait(5)
        slow.release.set()
        models = {id(future.result(5)) for future in loads}
    assert len(models) == 1 and [r.name for r in slow.loaded] == ["big"]


def test_a_model_evicted_and_loaded_again_keeps_the_backend_it_was_loaded_on(make_manager, add_faulty):
    other = add_faulty("other", fail_on=frozenset())
    manager = make_manager(max_cached_models=1)
    manager.load_model("a", backend_override="other")
    manager.load_model("b")  # evicts "a"
    manager.generate("a", "x", max_new_tokens=1)  # loads "a" again
    assert manager.get_model("a").backend_name == "other" and [r.name for r in other.loaded] == ["a", "a"]
