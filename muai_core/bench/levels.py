"""``muai bench --concurrency``: every target at every level, a process per level and round, rounds interleaved."""

from __future__ import annotations

import statistics
from typing import Any

from muai_core.bench.runner import BenchSettings, run_worker, worker_spec
from muai_core.monitor import percentile
from muai_core.progress import Progress


def run_concurrency(settings: BenchSettings, progress: Progress | None = None) -> list[dict[str, Any]]:
    """One row per target and level, from ``settings.runs`` rounds; each round runs every (target, level) once,
    in an order rotated by one each round, so that the machine's drift falls on all of them alike."""
    progress = progress or Progress("muai bench")
    jobs = [(target, level) for target in settings.targets for level in settings.concurrency]
    progress.steps = len(jobs) * settings.runs
    rounds: dict[tuple[str, int], list[dict[str, Any]]] = {(t.label, level): [] for t, level in jobs}
    for round_ in range(settings.runs):
        shift = round_ % len(jobs)
        for target, level in jobs[shift:] + jobs[:shift]:
            what = f"{target.label} x{level}"
            progress.step(f"{what}, round {round_ + 1}/{settings.runs}: load, {settings.warmup} warm-up + 1 timed")
            with progress.bar(settings.warmup + 1, what) as bar:
                result = run_worker(worker_spec(settings, target, concurrency=level), bar)
            rounds[(target.label, level)].append(result)
            progress.say(f"  {level_summary(result)}")
    rows = [merge(target.label, level, rounds[(target.label, level)]) for target, level in jobs]
    return relate_levels(rows)


def merge(target: str, level: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of a target at a level: aggregate tokens/s as median (min-max) of the rounds,
    percentiles over the requests (and tokens) of all rounds. A round that failed is counted, not merged."""
    good = [r for r in results if "error" not in r]
    row: dict[str, Any] = {"target": target, "concurrency": level}
    if not good:
        return {**row, "error": results[-1]["error"]}
    last = good[-1]
    tps = [r["aggregate_tps"] for r in good]
    lates = [r["late_ttft_s"] * 1000 for r in good if r.get("late_ttft_s") is not None]
    row.update({
        "backend": last["backend"],
        "precision": last["precision"],
        "model_info": last["model_info"],
        "rounds": len(good),
        "failed_rounds": len(results) - len(good),
        "prompt_tokens": last["prompt_tokens"],
        "new_tokens": last["new_tokens"],
        "load_s": statistics.median(r["load_s"] for r in good),
        "aggregate_tps": {"median": statistics.median(tps), "min": min(tps), "max": max(tps)},
        "ttft_ms": _quantiles([t for r in good for t in r["ttft_s"]]),
        "token_ms": _quantiles([t for r in good for t in r["token_latencies_s"]]),
        "queue_wait_ms": _quantiles([t for r in good for t in r["queue_wait_s"]]),
        "late_ttft_ms": statistics.median(lates) if lates else None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in good),
    })  # fmt: skip
    if row["failed_rounds"]:
        row["last_error"] = next(r["error"] for r in reversed(results) if "error" in r)
    return row


def relate_levels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each row's speed-up over the same target at concurrency 1, and its late TTFT over that idle TTFT."""
    single = {r["target"]: r for r in rows if r["concurrency"] == 1 and "error" not in r}
    for row in rows:
        alone = single.get(row["target"])
        if alone is None or "error" in row:
            continue
        row["speedup"] = row["aggregate_tps"]["median"] / alone["aggregate_tps"]["median"]
        if row["late_ttft_ms"] is not None and alone["ttft_ms"]:
            row["late_ttft_ratio"] = row["late_ttft_ms"] / alone["ttft_ms"]["p50"]
    return rows


def _quantiles(seconds: list[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    values = sorted(s * 1000 for s in seconds)
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)}


def level_summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    return (
        f"{result['aggregate_tps']:.1f} tok/s aggregate ({result['tokens']} tokens in {result['wall_s']:.1f} s), "
        f"load {result['load_s']:.1f} s"
    )
