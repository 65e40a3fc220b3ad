"""PerformanceMonitor: statistics against numpy, bounded memory, comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from muai_core.monitor import FallbackEvent, PerformanceMonitor, percentile


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50), st.sampled_from([0, 50, 95, 100]))
def test_percentile_matches_numpy(values, q):
    assert percentile(sorted(values), q) == pytest.approx(np.percentile(values, q), rel=1e-9, abs=1e-9)


def test_stats_of_known_samples():
    monitor = PerformanceMonitor()
    for latency, tokens in [(1.0, 10), (2.0, 10), (4.0, 10)]:
        monitor.record_inference("b", "m", latency, tokens, ttft=0.5)
    monitor.record_load("b", "m", 3.0)
    stats = monitor.get_backend_stats("b")
    assert stats["avg_latency"] == pytest.approx(7 / 3)
    assert stats["p50_latency"] == 2.0
    assert stats["avg_throughput"] == pytest.approx((10 + 5 + 2.5) / 3)
    assert (stats["sample_count"], stats["total_tokens"], stats["avg_ttft"], stats["avg_load_time"]) == (
        3,
        30,
        0.5,
        3.0,
    )
    assert monitor.get_backend_stats("absent") == {}


def test_memory_is_bounded_by_the_window():
    monitor = PerformanceMonitor(window=5)
    for i in range(100):
        monitor.record_inference("b", "m", 1.0 + i, 1)
        monitor.record_fallback(FallbackEvent("m", "a", "b", "load", str(i)))
    assert monitor.get_backend_stats("b")["sample_count"] == 5
    assert monitor.get_backend_stats("b")["avg_latency"] == pytest.approx(98.0)  # 96..100
    assert [e.reason for e in monitor.fallback_events()] == ["95", "96", "97", "98", "99"]


def test_compare_backends_ratios():
    monitor = PerformanceMonitor()
    monitor.record_inference("slow", "m", 2.0, 10)
    monitor.record_inference("fast", "m", 1.0, 10)
    comparison = monitor.compare_backends("slow", "fast")
    assert comparison["throughput_improvement"] == pytest.approx(2.0)
    assert comparison["latency_improvement"] == pytest.approx(2.0)
    missing = monitor.compare_backends("slow", "absent")
    assert math.isnan(missing["throughput_improvement"]) and "no inference recorded on absent" in missing["note"]


def test_zero_latency_does_not_divide_by_zero():
    assert PerformanceMonitor().record_inference("b", "m", 0.0, 3).throughput_tokens_per_sec == 0.0


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_window_must_be_a_positive_int(window):
    with pytest.raises(ValueError):
        PerformanceMonitor(window=window)
