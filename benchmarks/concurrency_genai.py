"""``openvino_vs_genai.py --concurrency``: muai (PyTorch, OpenVINO FP32 and INT8) against openvino-genai's
``ContinuousBatchingPipeline`` on the same IR, at each number of concurrent clients.

genai runs in a process of its own per level and round (``GENAI_CB_WORKER``): N client threads add one
request each at once (the chat-formatted prompt muai's clients send, genai's own chat template off), while
the main thread steps the pipeline and stamps every token as the step that made it returns. Its prefix
cache is off, as the repeated prompt would otherwise hit it. A pipeline that refuses to run (genai's
PagedAttention refuses an f32 KV cache on CPUs with bf16: "expect kvcache type bf16, current: f32") is a
row that says "refused: ...", not a crash.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from muai_core.bench import report
from muai_core.bench.levels import level_summary, merge, relate_levels
from muai_core.bench.levels_report import CONCURRENCY
from muai_core.bench.machine import cpu_description
from muai_core.bench.runner import run_worker
from muai_core.cli import concurrency_levels
from muai_core.errors import ConfigurationError
from muai_core.monitor import percentile

GENAI_CB_WORKER = r"""
import json, sys, threading, time
spec = json.loads(sys.argv[1])
import openvino_genai as genai
from muai_core.bench.worker import rss_mb

def refused(exc):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    why = next((line for line in lines if "kvcache type" in line.lower()), lines[-1] if lines else type(exc).__name__)
    print(json.dumps({"error": f"refused: {why}"}))
    sys.exit(0)

started = time.perf_counter()
scheduler = genai.SchedulerConfig()
scheduler.cache_size = spec["cache_gb"]
scheduler.enable_prefix_caching = False
try:
    pipe = genai.ContinuousBatchingPipeline(spec["dir"], scheduler, "CPU", spec["properties"])
except RuntimeError as exc:
    refused(exc)
load_s = time.perf_counter() - started
config = genai.GenerationConfig(max_new_tokens=spec["new_tokens"], ignore_eos=True, do_sample=False)
config.apply_chat_template = False  # the prompt comes chat-formatted, as muai's clients send it
first_only = genai.GenerationConfig(max_new_tokens=1, ignore_eos=True, do_sample=False)
first_only.apply_chat_template = False
ids = iter(range(10**9))

def step_until(handles, stamps, done):
    # Step the pipeline; after each step, stamp the tokens each handle can read. Until done() or all finished.
    while not done() and pipe.has_non_finished_requests():
        pipe.step()
        now = time.perf_counter()
        for index, handle in enumerate(handles):
            if handle.can_read():
                for output in handle.read().values():
                    stamps[index] += [now] * len(output.generated_ids)

def run_round(clients):
    added, handles = [0.0] * clients, [None] * clients
    start = threading.Barrier(clients + 1)
    def client(index):
        start.wait()
        added[index] = time.perf_counter()
        handles[index] = pipe.add_request(next(ids), spec["prompt"], config)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    stamps = [[] for _ in range(clients)]
    step_until(handles, stamps, lambda: False)
    wall_s = max(s[-1] for s in stamps) - began
    return {
        "wall_s": wall_s, "tokens": sum(map(len, stamps)), "aggregate_tps": sum(map(len, stamps)) / wall_s,
        "ttft_s": [s[0] - a for s, a in zip(stamps, added)],
        "token_latencies_s": [b - a for s in stamps for a, b in zip(s, s[1:])],
        "queue_wait_s": [0.0] * clients, "new_tokens": len(stamps[0]),
    }

def late_ttft(others):
    handles = [pipe.add_request(next(ids), spec["prompt"], config) for _ in range(others)]
    stamps = [[] for _ in range(others + 1)]
    step_until(handles, stamps, lambda: all(stamps[:others]))
    added = time.perf_counter()
    handles.append(pipe.add_request(next(ids), spec["prompt"], first_only))
    step_until(handles, stamps, lambda: bool(stamps[others]))
    for handle in handles[:others]:
        handle.cancel()
    step_until(handles, stamps, lambda: False)
    return stamps[others][0] - added

try:
    for index in range(spec["warmup"] + 1):
        measured = run_round(spec["concurrency"])
        print(json.dumps({"event": "round", "warmup": index < spec["warmup"], "seconds": measured["wall_s"],
                          "tokens": measured["tokens"]}), flush=True)
    late = late_ttft(spec["concurrency"] - 1) if spec["concurrency"] > 1 else None
except RuntimeError as exc:
    refused(exc)
print(json.dumps({
    "backend": "openvino-genai CB", "precision": spec["precision"], "model_info": {}, "load_s": load_s,
    "concurrency": spec["concurrency"], "prompt_tokens": spec["prompt_tokens"], "late_ttft_s": late,
    **measured, **rss_mb(),
}))
"""


def run_genai_cb(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", GENAI_CB_WORKER, json.dumps(spec)], capture_output=True, text=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    result = next((line for line in reversed(lines) if "event" not in line), None)
    if done.returncode != 0 or result is None:
        return {"error": done.stderr.strip().splitlines()[-1][-300:] if done.stderr.strip() else "genai failed"}
    return result


def chat_prompt(export: Path, prompt: str) -> tuple[str, int]:
    """The text muai's clients send for ``prompt`` (the export's chat template, generation prompt added)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(export)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return text, len(tokenizer(text, add_special_tokens=False)["input_ids"])


def targets(common: dict, cache: Path, scratch: Path, genai_dir: Callable | None) -> list[tuple[str, Callable]]:
    """(label, run(level)) per target: PyTorch, then per precision muai's OpenVINO and genai's CB."""
    found: list[tuple[str, Callable]] = [
        ("muai pytorch", lambda level: run_worker_level({**common, "backend": "pytorch", "precision": ""}, level))
    ]
    for precision, kv in (("FP32", "f32"), ("INT8", None)):
        mine = {**common, "backend": "openvino", "precision": precision}
        found.append((f"muai openvino {precision}", lambda level, spec=mine: run_worker_level(spec, level)))
        if genai_dir is None:
            continue
        export = cache / (common["model"] if precision == "FP32" else f"{common['model']}-{precision.lower()}")
        prompt, prompt_tokens = chat_prompt(export, common["prompt"])
        properties = {"KV_CACHE_PRECISION": kv} if kv else {}
        spec = {**common, "dir": str(genai_dir(export, scratch / precision)), "properties": properties,
                "prompt": prompt, "prompt_tokens": prompt_tokens, "precision": precision}  # fmt: skip
        found.append(
            (f"openvino-genai CB {precision}", lambda level, spec=spec: run_genai_cb({**spec, "concurrency": level}))
        )
    return found


def run_worker_level(spec: dict, level: int) -> dict:
    return run_worker({**spec, "concurrency": level})


def concurrency_main(
    args: argparse.Namespace, parser: argparse.ArgumentParser, common: dict, cache: Path, genai_dir: Callable | None
) -> int:
    try:
        levels = concurrency_levels(args.concurrency)
    except ConfigurationError as exc:
        parser.error(f"{exc.reason}; {exc.hint}")
    common = {**common, "cache_gb": args.cache_gb}
    cpu = cpu_description()
    with tempfile.TemporaryDirectory() as scratch:
        found = targets(common, cache, Path(scratch), genai_dir)
        jobs = [(label, run, level) for level in levels for label, run in found]
        results: dict[tuple[str, int], list[dict]] = {(label, level): [] for label, _, level in jobs}
        for round_ in range(args.rounds):
            shift = round_ % len(jobs)  # levels and targets take turns, rotated each round
            for label, run, level in jobs[shift:] + jobs[:shift]:
                print(f"round {round_ + 1}/{args.rounds}: {label} x{level}", file=sys.stderr, flush=True)
                results[(label, level)].append(run(level))
                print(f"      {level_summary(results[(label, level)][-1])}", file=sys.stderr, flush=True)
    rows = relate_levels([merge(label, level, results[(label, level)]) for label, _, level in jobs])
    print(report.table(rows, CONCURRENCY))
    for line in paired_lines(results, levels):
        print(line)
    title = f"{args.model}: muai vs openvino-genai CB, {args.new_tokens} new tokens per request\n{cpu}"
    meta = {"model": args.model, "cpu": cpu, **vars(args), "concurrency": list(levels)}
    for path in report.write(rows, Path(args.out), title, meta, layout=CONCURRENCY):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def paired_lines(results: dict[tuple[str, int], list[dict]], levels: tuple[int, ...]) -> list[str]:
    """muai / genai per level, round by round (the rounds in which both ran): aggregate tok/s and per-token p95."""
    lines = []
    for precision in ("FP32", "INT8"):
        for level in levels:
            mine = results.get((f"muai openvino {precision}", level), [])
            theirs = results.get((f"openvino-genai CB {precision}", level), [])
            pairs = [(a, b) for a, b in zip(mine, theirs, strict=False) if "error" not in a | b]
            pairs = [(a, b) for a, b in pairs if a["token_latencies_s"] and b["token_latencies_s"]]
            if not pairs:
                continue
            speed = [a["aggregate_tps"] / b["aggregate_tps"] for a, b in pairs]
            p95 = [_p95(a) / _p95(b) for a, b in pairs]
            lines.append(
                f"{precision} x{level}: muai / genai CB, paired by round: aggregate tok/s "
                f"{statistics.median(speed):.2f}x, per-token p95 {statistics.median(p95):.2f}x"
            )
    return lines


def _p95(result: dict) -> float:
    return percentile(sorted(result["token_latencies_s"]), 95)
