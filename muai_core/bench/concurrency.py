"""One concurrency level of one target in this process: N client threads, one loaded model, one request each.

A round starts the N requests at once (a barrier) and ends when the last one ends: its aggregate
tokens/s are all new tokens over that wall time. After the timed round, with N > 1, ``late_ttft_s``
is the TTFT of one more request sent once the N - 1 others are decoding (they are then stopped).
Backends that serve one request at a time simply queue the others: the figures show it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from muai_core.bench.worker import load, rss_mb
from muai_core.contracts import GenerationResult
from muai_core.errors import InferenceError
from muai_core.manager import ModelManager

#: How long a round may take before its clients are given up on.
ROUND_TIMEOUT_S = 1500


def measure_concurrent(
    spec: dict[str, Any], on_event: Callable[[dict[str, Any]], None] = lambda event: None
) -> dict[str, Any]:
    """Load, run ``warmup`` rounds and one timed round of ``concurrency`` requests, then the late request."""
    manager, loaded = load(spec, on_event)
    clients = spec["concurrency"]
    kwargs = {"max_new_tokens": spec["new_tokens"], "ignore_eos": True, "return_full_text": False, "chat": True}
    for index in range(spec["warmup"] + 1):
        results, wall_s = run_round(manager, spec["model"], spec["prompt"], clients, kwargs)
        tokens = sum(r.new_tokens for r in results)
        on_event({"event": "round", "warmup": index < spec["warmup"], "seconds": wall_s, "tokens": tokens})
    late = late_ttft(manager, spec["model"], spec["prompt"], clients - 1, kwargs) if clients > 1 else None
    return {
        **loaded,
        "concurrency": clients,
        "prompt_tokens": results[0].prompt_tokens,
        "new_tokens": results[0].new_tokens,
        "wall_s": wall_s,
        "tokens": tokens,
        "aggregate_tps": tokens / wall_s,
        "ttft_s": [r.ttft_s for r in results],
        "token_latencies_s": [t for r in results for t in r.token_latencies_s],
        "queue_wait_s": [r.queue_wait_s for r in results],
        "late_ttft_s": late,
        **rss_mb(),
    }


def run_round(
    manager: ModelManager, model: str, prompt: str, clients: int, kwargs: dict[str, Any]
) -> tuple[list[GenerationResult], float]:
    """``clients`` threads each send one request at the same moment; their results and the round's wall time."""
    start = threading.Barrier(clients + 1)
    results: list[GenerationResult | BaseException | None] = [None] * clients

    def client(index: int) -> None:
        start.wait()
        try:
            results[index] = manager.generate_result(model, prompt, **kwargs)
        except BaseException as exc:  # handed to the main thread, which raises it
            results[index] = exc

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join(ROUND_TIMEOUT_S)
    wall_s = time.perf_counter() - started
    for result in results:
        if isinstance(result, BaseException):
            raise result
        if result is None:
            raise InferenceError(f"a client got no answer within {ROUND_TIMEOUT_S} s", hint="lower --concurrency")
    return results, wall_s  # type: ignore[return-value]


def late_ttft(manager: ModelManager, model: str, prompt: str, others: int, kwargs: dict[str, Any]) -> float:
    """TTFT of a request sent once ``others`` streamed requests have each had their first piece."""
    decoding = threading.Semaphore(0)
    stop = threading.Event()
    failures: list[BaseException] = []

    def client() -> None:
        try:
            for index, _piece in enumerate(manager.stream(model, prompt, **kwargs)):
                if index == 0:
                    decoding.release()
                if stop.is_set():
                    break  # leaving the stream stops its generation
        except BaseException as exc:  # handed to the main thread, which raises it
            failures.append(exc)
            decoding.release()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(others)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(others):
            if not decoding.acquire(timeout=ROUND_TIMEOUT_S):
                raise InferenceError(f"a client had no first token within {ROUND_TIMEOUT_S} s")
        if failures:
            raise failures[0]
        return manager.generate_result(model, prompt, **{**kwargs, "max_new_tokens": 1}).ttft_s
    finally:
        stop.set()
        for thread in threads:
            thread.join(ROUND_TIMEOUT_S)
