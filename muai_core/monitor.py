"""Performance monitor: per-inference metrics, load times, fallback events and concurrency, in bounded windows."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 1000
#: Per-token latencies kept per series: this many per inference of the window.
TOKENS_PER_INFERENCE = 128
#: Aggregate throughput counts the generations that ended in the last this many seconds.
RECENT_S = 60.0


@dataclass(frozen=True)
class InferenceMetrics:
    """Metrics for a single inference."""

    backend: str
    model_name: str
    latency_ms: float
    tokens_generated: int
    throughput_tokens_per_sec: float
    operation: str = "generate"
    ttft_ms: float | None = None
    #: Part of ``ttft_ms`` spent waiting for a place in the model's batch.
    queue_wait_ms: float | None = None
    #: When it ended, in seconds on the monitor's clock (``time.perf_counter`` unless given another).
    ended_s: float = 0.0
    #: Speculative decoding: steps that checked proposed tokens, tokens proposed, and tokens accepted.
    verify_calls: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class FallbackEvent:
    """One hand-over from a failing backend to the next in the chain."""

    model_name: str
    from_backend: str
    to_backend: str
    stage: str
    reason: str
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class LoadEvent:
    backend: str
    model_name: str
    seconds: float
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class PerformanceMonitor:
    """Records and summarises what every backend did. Memory is bounded by ``window`` per series
    (``window * TOKENS_PER_INFERENCE`` for per-token latencies)."""

    def __init__(self, window: int = DEFAULT_WINDOW, clock: Callable[[], float] = time.perf_counter) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._inferences: dict[tuple[str, str], deque[InferenceMetrics]] = defaultdict(self._series)
        self._token_latencies: dict[tuple[str, str], deque[float]] = defaultdict(
            lambda: deque(maxlen=self.window * TOKENS_PER_INFERENCE)
        )
        self._in_flight: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # [now, peak]
        self._loads: dict[tuple[str, str], deque[LoadEvent]] = defaultdict(self._series)
        self._fallbacks: deque[FallbackEvent] = self._series()
        self._detours: deque[FallbackEvent] = self._series()

    def _series(self) -> deque:
        return deque(maxlen=self.window)

    def record_inference(
        self,
        backend: str,
        model_name: str,
        latency: float,
        tokens: int,
        *,
        operation: str = "generate",
        ttft: float | None = None,
        queue_wait: float | None = None,
        token_latencies: tuple[float, ...] = (),
        speculation: tuple[int, int, int] = (0, 0, 0),
    ) -> InferenceMetrics:
        """Record one inference that ends now; ``latency``, ``ttft``, ``queue_wait`` and ``token_latencies``
        (between consecutive new tokens) in seconds; ``speculation``: verify calls, tokens proposed, accepted."""
        metrics = InferenceMetrics(
            backend=backend,
            model_name=model_name,
            latency_ms=latency * 1000.0,
            tokens_generated=tokens,
            throughput_tokens_per_sec=tokens / latency if latency > 0 else 0.0,
            operation=operation,
            ttft_ms=None if ttft is None else ttft * 1000.0,
            queue_wait_ms=None if queue_wait is None else queue_wait * 1000.0,
            ended_s=self._clock(),
            verify_calls=speculation[0],
            draft_tokens=speculation[1],
            accepted_tokens=speculation[2],
        )
        with self._lock:
            self._inferences[(backend, model_name)].append(metrics)
            self._token_latencies[(backend, model_name)].extend(token_latencies)
        return metrics

    @contextmanager
    def in_flight(self, backend: str, model_name: str) -> Iterator[None]:
        """Count a generation as in flight on ``backend`` while the ``with`` block runs."""
        with self._lock:
            counts = self._in_flight[(backend, model_name)]
            counts[0] += 1
            counts[1] = max(counts)
        try:
            yield
        finally:
            with self._lock:
                counts[0] -= 1

    def record_load(self, backend: str, model_name: str, seconds: float) -> None:
        with self._lock:
            self._loads[(backend, model_name)].append(LoadEvent(backend, model_name, seconds))

    def record_fallback(self, event: FallbackEvent) -> None:
        with self._lock:
            self._fallbacks.append(event)

    def record_detour(self, event: FallbackEvent) -> None:
        """One call run on another backend while the model stays on ``from_backend`` (``UnsupportedRequest``)."""
        with self._lock:
            self._detours.append(event)

    def detour_events(self, model_name: str | None = None) -> list[FallbackEvent]:
        with self._lock:
            return [e for e in self._detours if model_name is None or e.model_name == model_name]

    def fallback_events(self, model_name: str | None = None) -> list[FallbackEvent]:
        with self._lock:
            return [e for e in self._fallbacks if model_name is None or e.model_name == model_name]

    def inferences(self, backend: str | None = None, model_name: str | None = None) -> list[InferenceMetrics]:
        with self._lock:
            return [
                m
                for (b, n), series in self._inferences.items()
                if (backend is None or b == backend) and (model_name is None or n == model_name)
                for m in series
            ]

    def load_times(self, backend: str | None = None, model_name: str | None = None) -> list[float]:
        with self._lock:
            return [
                e.seconds
                for (b, n), series in self._loads.items()
                if (backend is None or b == backend) and (model_name is None or n == model_name)
                for e in series
            ]

    def get_backend_stats(self, backend: str, model_name: str | None = None) -> dict[str, Any]:
        """Aggregate one backend's inferences (optionally for one model), with its concurrency figures;
        ``{}`` when it has none and none in flight. Times in seconds."""
        samples = self.inferences(backend, model_name)
        concurrency = self.concurrency_stats(backend, model_name)
        if not samples:
            return {"backend": backend, "sample_count": 0, **concurrency} if concurrency["in_flight"] else {}
        latencies = sorted(m.latency_ms / 1000.0 for m in samples)
        ttfts = [m.ttft_ms / 1000.0 for m in samples if m.ttft_ms is not None]
        loads = self.load_times(backend, model_name)
        return {
            "backend": backend,
            "avg_latency": sum(latencies) / len(latencies),
            "p50_latency": percentile(latencies, 50),
            "p95_latency": percentile(latencies, 95),
            "avg_throughput": sum(m.throughput_tokens_per_sec for m in samples) / len(samples),
            "avg_ttft": sum(ttfts) / len(ttfts) if ttfts else None,
            "total_tokens": sum(m.tokens_generated for m in samples),
            "sample_count": len(samples),
            "avg_load_time": sum(loads) / len(loads) if loads else None,
            **speculation_stats(samples),
            **concurrency,
        }

    def concurrency_stats(self, backend: str, model_name: str | None = None) -> dict[str, Any]:
        """Generations in flight now and at most at once so far (of one model); aggregate tokens/s of the
        generations that ended in the last ``RECENT_S`` seconds (their tokens over the time at least one of
        them ran); p50/p95 of TTFT, of the latency between tokens and of the queue wait, over the window."""
        with self._lock:
            keys = [k for k in self._in_flight if k[0] == backend and model_name in (None, k[1])]
            in_flight = sum(self._in_flight[k][0] for k in keys)
            peak = max((self._in_flight[k][1] for k in keys), default=0)
            tokens = sorted(
                t for (b, n), series in self._token_latencies.items() if b == backend and model_name in (None, n)
                for t in series
            )  # fmt: skip
        generations = [m for m in self.inferences(backend, model_name) if m.operation == "generate"]
        recent = [m for m in generations if m.ended_s >= self._clock() - RECENT_S]
        busy = _covered([(m.ended_s - m.latency_ms / 1000.0, m.ended_s) for m in recent])
        ttfts = sorted(m.ttft_ms / 1000.0 for m in generations if m.ttft_ms is not None)
        waits = sorted(m.queue_wait_ms / 1000.0 for m in generations if m.queue_wait_ms is not None)
        return {
            "in_flight": in_flight,
            "peak_in_flight": peak,
            "aggregate_throughput": sum(m.tokens_generated for m in recent) / busy if busy > 0 else None,
            **_quantiles("ttft", ttfts),
            **_quantiles("token_latency", tokens),
            **_quantiles("queue_wait", waits),
        }

    def get_model_stats(self, model_name: str) -> dict[str, Any]:
        """Per-backend stats for one model, plus its fallback and detour events."""
        with self._lock:
            backends = sorted({b for (b, n) in [*self._inferences, *self._in_flight] if n == model_name})
        return {
            "model_name": model_name,
            "backends": {b: self.get_backend_stats(b, model_name) for b in backends},
            "fallback_events": self.fallback_events(model_name),
            "detour_events": self.detour_events(model_name),
        }

    def compare_backends(self, backend1: str, backend2: str) -> dict[str, Any]:
        """How ``backend2`` compares with ``backend1``; ratios above 1 mean ``backend2`` is better.

        Ratios are NaN, with a ``note`` saying why, while either backend has no recorded inference.
        """
        stats1, stats2 = self.get_backend_stats(backend1), self.get_backend_stats(backend2)
        comparison: dict[str, Any] = {f"{backend1}_stats": stats1, f"{backend2}_stats": stats2}
        missing = [b for b, stats in ((backend1, stats1), (backend2, stats2)) if not stats.get("sample_count")]
        if missing:
            note = f"no inference recorded on {' or '.join(missing)} yet: run generate on both backends first"
            log.warning("muai: cannot compare %s with %s: %s", backend1, backend2, note)
            return {"latency_improvement": math.nan, "throughput_improvement": math.nan, "note": note, **comparison}
        return {
            "latency_improvement": _ratio(stats1["avg_latency"], stats2["avg_latency"]),
            "throughput_improvement": _ratio(stats2["avg_throughput"], stats1["avg_throughput"]),
            **comparison,
        }

    def reset(self) -> None:
        with self._lock:
            self._inferences.clear()
            self._token_latencies.clear()
            self._in_flight.clear()
            self._loads.clear()
            self._fallbacks.clear()
            self._detours.clear()


def speculation_stats(samples: list[InferenceMetrics]) -> dict[str, float | None]:
    """Speculative decoding over ``samples``: the share of proposed tokens accepted, and the tokens each verify
    call produced (the accepted ones and the one it adds); None without any verify call."""
    calls = sum(m.verify_calls for m in samples)
    proposed = sum(m.draft_tokens for m in samples)
    accepted = sum(m.accepted_tokens for m in samples)
    return {
        "acceptance_rate": accepted / proposed if proposed else None,
        "tokens_per_verify": (accepted + calls) / calls if calls else None,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def _quantiles(name: str, sorted_values: list[float]) -> dict[str, float | None]:
    return {f"p{q}_{name}": percentile(sorted_values, q) if sorted_values else None for q in (50, 95)}


def _covered(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the ``(start, end)`` intervals."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


_default = PerformanceMonitor()


def default_monitor() -> PerformanceMonitor:
    """The process-wide monitor that every ModelManager shares unless given its own."""
    return _default
