"""The monitor's concurrency figures: in flight now and at peak, aggregate tokens/s, TTFT, per-token, queue wait."""

from __future__ import annotations

import threading

import pytest

from muai_core.monitor import RECENT_S, PerformanceMonitor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_known_generations_give_exact_percentiles_and_aggregate_throughput():
    clock = Clock()
    monitor = PerformanceMonitor(clock=clock)
    # Two overlapping generations, [990, 998] and [994, 1000], then one alone at [1010, 1012]: 12 s busy.
    clock.now = 998.0
    monitor.record_inference("b", "m", 8.0, 40, ttft=0.1, queue_wait=0.0, token_latencies=(0.01, 0.02, 0.03))
    clock.now = 1000.0
    monitor.record_inference("b", "m", 6.0, 30, ttft=0.3, queue_wait=0.2, token_latencies=(0.04, 0.05))
    clock.now = 1012.0
    monitor.record_inference("b", "m", 2.0, 14, ttft=0.5, queue_wait=0.4, token_latencies=(0.06,))
    monitor.record_inference("b", "m", 1.0, 99, operation="forward")  # not a generation: not counted
    stats = monitor.get_backend_stats("b", "m")
    assert stats["aggregate_throughput"] == pytest.approx((40 + 30 + 14) / 12.0)
    assert (stats["p50_ttft"], stats["p95_ttft"]) == pytest.approx((0.3, 0.48))
    assert (stats["p50_token_latency"], stats["p95_token_latency"]) == pytest.approx((0.035, 0.0575))
    assert (stats["p50_queue_wait"], stats["p95_queue_wait"]) == pytest.approx((0.2, 0.38))
    assert (stats["in_flight"], stats["peak_in_flight"]) == (0, 0)
    # Generations that ended more than RECENT_S ago leave the aggregate; the percentiles keep the window.
    clock.now = 1000.0 + RECENT_S + 1
    assert monitor.get_backend_stats("b", "m")["aggregate_throughput"] == pytest.approx(14 / 2.0)
    clock.now = 1012.0 + RECENT_S + 1
    stats = monitor.get_backend_stats("b", "m")
    assert stats["aggregate_throughput"] is None and stats["p50_ttft"] == pytest.approx(0.3)


def test_in_flight_counts_now_and_at_peak_per_model():
    monitor = PerformanceMonitor()
    with monitor.in_flight("b", "m"), monitor.in_flight("b", "m"):
        with monitor.in_flight("b", "m"), monitor.in_flight("b", "other"):
            stats = monitor.get_model_stats("m")["backends"]["b"]
            assert (stats["in_flight"], stats["peak_in_flight"], stats["sample_count"]) == (3, 3, 0)
        assert monitor.get_backend_stats("b", "m")["in_flight"] == 2
    with pytest.raises(RuntimeError), monitor.in_flight("b", "m"):
        raise RuntimeError("a failed generation leaves the count too")
    assert monitor.get_backend_stats("b", "m") == {}  # nothing recorded and nothing in flight
    assert monitor.concurrency_stats("b", "m")["peak_in_flight"] == 3
    assert monitor.concurrency_stats("b")["peak_in_flight"] == 3  # the most of one model at once
    assert monitor.compare_backends("b", "c")["note"].startswith("no inference recorded on b or c")


def test_no_generation_gives_none_not_zero():
    monitor = PerformanceMonitor()
    monitor.record_inference("b", "m", 1.0, 5, operation="forward")
    stats = monitor.get_backend_stats("b")
    assert stats["aggregate_throughput"] is None and stats["p95_ttft"] is None and stats["p95_queue_wait"] is None
    assert stats["p50_token_latency"] is None and stats["sample_count"] == 1


def test_the_manager_counts_concurrent_generations_and_records_their_timings(make_manager):
    manager = make_manager()
    both_running = threading.Barrier(2, timeout=10)
    seen = []

    def meet(piece: str) -> None:
        if not seen:
            seen.append(manager.get_performance_stats("m")["backends"]["counting"]["in_flight"])
        both_running.wait()

    manager.load_model("m")
    threads = [threading.Thread(target=manager.generate, args=("m", "ab"), kwargs={"max_new_tokens": 3,
               "streamer": meet}) for _ in range(2)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    stats = manager.get_performance_stats("m")["backends"]["counting"]
    assert seen[0] >= 1 and (stats["in_flight"], stats["peak_in_flight"], stats["sample_count"]) == (0, 2, 2)
    assert stats["p50_queue_wait"] == 0.0 and stats["aggregate_throughput"] > 0
    assert stats["p95_token_latency"] is not None and stats["total_tokens"] == 6
