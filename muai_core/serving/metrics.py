"""Prometheus metrics of one server, per model and backend, in a registry of its own (``GET /metrics``)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from muai_core.contracts import GenerationResult
from muai_core.monitor import FallbackEvent, PerformanceMonitor

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ServerMetrics:
    """Requests, tokens, TTFT and per-token latency, fallbacks (read from the manager's monitor) and queue depth.

    The queue depth of a model is how many of its requests wait for their first token.
    """

    def __init__(self, monitor: PerformanceMonitor) -> None:
        self.registry = CollectorRegistry()
        self._monitor = monitor
        self._lock = threading.Lock()
        earlier = monitor.fallback_events()  # the monitor may be shared: count only what happens from now on
        self._last_fallback: FallbackEvent | None = earlier[-1] if earlier else None
        labels = ("model", "backend")
        self.requests = Counter(
            "muai_requests", "Requests answered", ("endpoint", "model", "backend", "status"), registry=self.registry
        )
        self.tokens = Counter("muai_tokens", "Tokens processed", (*labels, "kind"), registry=self.registry)
        self.ttft = Histogram(
            "muai_ttft_seconds", "Time to first token", labels, buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.token_latency = Histogram(
            "muai_token_latency_seconds", "Time per token after the first", labels, buckets=TOKEN_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "muai_fallbacks", "Hand-overs from a failing backend to the next", ("model", "from_backend", "to_backend"),
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge("muai_queue_depth", "Requests waiting for their first token", ("model",),
                                 registry=self.registry)  # fmt: skip

    def answered(self, endpoint: str, model: str, result: GenerationResult) -> None:
        """Record one complete answer."""
        self.requests.labels(endpoint, model, result.backend, "200").inc()
        self.tokens.labels(model, result.backend, "prompt").inc(result.prompt_tokens)
        self.tokens.labels(model, result.backend, "completion").inc(result.new_tokens)
        self.ttft.labels(model, result.backend).observe(result.ttft_s)
        for latency in result.token_latencies_s:
            self.token_latency.labels(model, result.backend).observe(latency)

    def failed(self, endpoint: str, model: str, status: int) -> None:
        self.requests.labels(endpoint, model, "", str(status)).inc()

    def render(self) -> bytes:
        """The metrics in Prometheus text format, fallbacks brought up to date first."""
        self._count_fallbacks()
        return generate_latest(self.registry)

    def _count_fallbacks(self) -> None:
        """Count the monitor's fallback events newer than the last one counted."""
        with self._lock:
            events = self._monitor.fallback_events()
            seen = next((i for i in range(len(events) - 1, -1, -1) if events[i] is self._last_fallback), -1)
            for event in events[seen + 1 :]:
                self.fallbacks.labels(event.model_name, event.from_backend, event.to_backend).inc()
            if events:
                self._last_fallback = events[-1]
