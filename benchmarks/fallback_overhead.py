#!/usr/bin/env python3
"""What a fallback costs the resolver itself: a backend that fails at once, then one that loads at once.

    python benchmarks/fallback_overhead.py [--runs 1000]

Both backends are real in-place plugins doing no I/O, so the time measured is muai's: the attempt
record, the WARNING log, the fallback event and the walk to the next backend. The design allows
100 ms; we aim for under 10 ms.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from muai_core import ModelManager, PerformanceMonitor
from muai_core.plugins import PluginRegistry
from muai_core.testing import CountingBackend, FaultyBackend


def timed_loads(manager: ModelManager, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        manager.load_model("m")
        times.append(time.perf_counter() - started)
        manager.unload_model("m")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the WARNING is still built and emitted, just not printed
    registry = PluginRegistry()
    registry.register(CountingBackend(), "counting")
    registry.register(FaultyBackend(), "faulty")
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "system.yaml"
        config.write_text("backend: {priority: [counting]}\n")
        direct = ModelManager(backend="counting", registry=registry, monitor=PerformanceMonitor(), config_path=config)
        falling = ModelManager(backend="faulty", registry=registry, monitor=PerformanceMonitor(), config_path=config)
        base, with_fallback = timed_loads(direct, args.runs), timed_loads(falling, args.runs)
    overhead = [(b - a) * 1000 for a, b in zip(sorted(base), sorted(with_fallback), strict=True)]
    print(f"load without fallback: median {statistics.median(base) * 1e6:.0f} us")
    print(f"load with one fallback: median {statistics.median(with_fallback) * 1e6:.0f} us")
    p99 = sorted(overhead)[int(0.99 * len(overhead))]
    print(f"fallback overhead: median {statistics.median(overhead):.3f} ms, p99 {p99:.3f} ms (design: < 100 ms)")
    print(f"fallback events recorded: {len(falling.performance_monitor.fallback_events())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
