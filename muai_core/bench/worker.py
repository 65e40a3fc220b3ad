"""One benchmark target in this process: load, warm up, time N greedy generations, print JSON.
(With ``concurrency`` in the spec: ``muai_core.bench.concurrency``'s measure instead.)

The first call's time to first token is kept apart (``cold_ttft_ms``): it includes the runtime's work on
first seeing each input shape, which a one-shot ``muai generate`` pays and the timed runs do not.

Run as ``python -m muai_core.bench.worker SPEC_JSON``; a fresh process per target keeps one
backend from warming or starving another, and makes peak RSS that target's own. Each stdout line
is JSON: ``{"event": ...}`` lines report progress as it happens, and the last line is the result.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from muai_core.errors import BackendError
from muai_core.manager import ModelManager
from muai_core.monitor import percentile


def rss_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in MiB."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


def load(spec: dict[str, Any], on_event: Callable[[dict[str, Any]], None]) -> tuple[ModelManager, dict[str, Any]]:
    """The manager with ``spec``'s model loaded on its backend alone, and the load's figures."""
    settings = {"enable_fallback": False}  # a benchmark of a backend must not quietly run another
    if spec.get("precision"):
        settings["precision"] = spec["precision"]
    manager = ModelManager(
        device=spec.get("device", "cpu"),
        backend=spec["backend"],
        backend_config=settings,
        config_path=spec.get("config"),
    )
    baseline = rss_mb()["rss_mb"]
    started = time.perf_counter()
    loaded = manager.load_model(spec["model"], backend_override=[spec["backend"]])
    load_s = time.perf_counter() - started
    on_event({"event": "loaded", "load_s": load_s})
    return manager, {
        "backend": loaded.backend_name,
        "precision": spec.get("precision") or "",
        "model_info": loaded.backend.info(loaded.handle),
        "load_s": load_s,
        "baseline_rss_mb": baseline,
        "rss_after_load_mb": rss_mb()["rss_mb"],
    }


def measure(spec: dict[str, Any], on_event: Callable[[dict[str, Any]], None] = lambda event: None) -> dict[str, Any]:
    manager, loaded = load(spec, on_event)
    kwargs = {"max_new_tokens": spec["new_tokens"], "ignore_eos": True, "return_full_text": False}
    if spec.get("prompt_lookup"):
        kwargs["prompt_lookup"] = spec["prompt_lookup"]
    if spec.get("draft") is not None:
        kwargs["draft"] = spec["draft"]
    calls = []
    for index in range(spec["warmup"] + spec["runs"]):
        started = time.perf_counter()
        calls.append(manager.generate_result(spec["model"], spec["prompt"], **kwargs))
        seconds = time.perf_counter() - started
        on_event(
            {"event": "call", "warmup": index < spec["warmup"], "seconds": seconds, "ttft_ms": calls[-1].ttft_s * 1000}
        )
    results = calls[spec["warmup"] :]
    decode = [(r.new_tokens - 1) / sum(r.token_latencies_s) for r in results if r.token_latencies_s]
    latencies = sorted(t * 1000 for r in results for t in r.token_latencies_s)
    return {
        **loaded,
        "prompt_tokens": results[0].prompt_tokens,
        "new_tokens": results[0].new_tokens,
        "cold_ttft_ms": calls[0].ttft_s * 1000,
        "ttft_ms": _spread([r.ttft_s * 1000 for r in results]),
        "decode_tps": _spread(decode),
        "token_p50_ms": percentile(latencies, 50) if latencies else None,
        "token_p95_ms": percentile(latencies, 95) if latencies else None,
        **speculation(results),
        **rss_mb(),
        "token_ids": list(results[0].token_ids),
        "completion": results[0].completion,
    }


def speculation(results: list[Any]) -> dict[str, float | None]:
    """Prompt lookup's acceptance rate and tokens per verify call over ``results`` (None: no verify call)."""
    calls = sum(r.verify_calls for r in results)
    proposed, accepted = sum(r.draft_tokens for r in results), sum(r.accepted_tokens for r in results)
    return {
        "acceptance_rate": accepted / proposed if proposed else None,
        "tokens_per_verify": (accepted + calls) / calls if calls else None,
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def main() -> int:
    from muai_core.bench.concurrency import measure_concurrent

    try:
        spec = json.loads(sys.argv[1])
        run = measure_concurrent if "concurrency" in spec else measure
        print(json.dumps(run(spec, on_event=_emit)))
    except BackendError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
