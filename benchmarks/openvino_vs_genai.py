#!/usr/bin/env python3
"""muai's OpenVINO backend against PyTorch and against openvino-genai's LLMPipeline on the same IR.

    python benchmarks/openvino_vs_genai.py smollm2-135m [--new-tokens 128] [--rounds 5]
    python benchmarks/openvino_vs_genai.py smollm2-135m --concurrency 1,4,8,16 [--rounds 3]

Every target runs in its own process with the same prompt and token budget (EOS ignored), once per round;
the targets take turns so that the machine's drift falls on all of them alike, and muai's ratios to genai
are also taken round by round (runs minutes apart drift by more than the gap being measured). The
openvino-genai rows need ``pip install openvino-genai openvino-tokenizers`` (same release as
openvino); without them those rows are skipped. genai runs twice per precision: with its default
PagedAttention conversion (PA; its prefix cache off, as the repeated prompt would otherwise hit it) and with
the stateful SDPA graph (SDPA). The OpenVINO tokenizer
models that LLMPipeline needs are written beside a linked copy of each export, never into it.

With ``--concurrency`` each level runs ``muai bench --concurrency``'s worker (N clients, one chat request
each, one loaded model) for PyTorch and muai's OpenVINO, and genai's ``ContinuousBatchingPipeline`` on the
same IR with N client threads adding their request at once (``concurrency_genai.py``), every (target, level)
in its own process, interleaved by round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from concurrency_genai import concurrency_main

from muai_core.bench import report
from muai_core.bench.runner import DEFAULT_PROMPT, relate, run_worker, summary
from muai_core.config import load_config
from muai_core.model_source import resolve_model
from muai_openvino.settings import exports_root

#: genai's LLMPipeline converts the stateful IR to PagedAttention on CPU by default ("PA"); "SDPA" keeps the
#: stateful graph muai runs, so that row compares the same graph driven two ways.
ATTENTION_BACKENDS = ("PA", "SDPA")

GENAI_WORKER = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
import openvino_genai as genai
from muai_core.bench.worker import rss_mb
baseline = rss_mb()["rss_mb"]
started = time.perf_counter()
properties = dict(spec["properties"])
if properties.get("ATTENTION_BACKEND") == "PA":
    # LLMPipeline's own PA scheduler defaults, less prefix caching: with it, every run after the first reuses the
    # cached KV of the repeated prompt and its TTFT measures a cache hit, not a prefill.
    scheduler = genai.SchedulerConfig()
    scheduler.max_num_batched_tokens = 2**64 - 1
    scheduler.enable_prefix_caching = False
    properties["scheduler_config"] = scheduler
pipe = genai.LLMPipeline(spec["dir"], "CPU", **properties)
load_s = time.perf_counter() - started
after_load = rss_mb()["rss_mb"]
config = genai.GenerationConfig(max_new_tokens=spec["new_tokens"], ignore_eos=True, do_sample=False)
config.apply_chat_template = False  # the same raw prompt as the muai rows
ttft, tps, tokens, latencies = [], [], None, []
for call in range(spec["warmup"] + spec["runs"]):
    # Timed by genai's own stamp of each new token (ms, on the monotonic clock time.perf_counter reads), from
    # the call: its streamer holds back a token whose text may still change, so callback times lag some tokens.
    started = time.perf_counter()
    result = pipe.generate([spec["prompt"]], config)
    finished = time.perf_counter()
    stamps = [t / 1000 for t in result.perf_metrics.raw_metrics.m_new_token_times]
    if not started <= stamps[0] <= stamps[-1] <= finished:
        sys.exit("genai's token times are not on time.perf_counter's clock: cannot time this version")
    first_token_ms = (stamps[0] - started) * 1000
    if call == 0:
        cold_ttft = first_token_ms
    if call < spec["warmup"]:
        continue
    ttft.append(first_token_ms)
    tps.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    latencies += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]
    tokens = tokens or result.texts[0]
    prompt_tokens = result.perf_metrics.get_num_input_tokens()
spread = lambda v: {"median": sorted(v)[len(v) // 2], "min": min(v), "max": max(v)}
latencies.sort()
print(json.dumps({
    "backend": "openvino-genai", "load_s": load_s, "prompt_tokens": prompt_tokens, "new_tokens": spec["new_tokens"],
    "cold_ttft_ms": cold_ttft, "ttft_ms": spread(ttft), "decode_tps": spread(tps),
    "token_p50_ms": latencies[len(latencies) // 2] if latencies else 0.0,
    "token_p95_ms": latencies[int(len(latencies) * 0.95)] if latencies else 0.0,
    "baseline_rss_mb": baseline, "rss_after_load_mb": after_load, **rss_mb(), "token_ids": [], "completion": tokens,
}))
"""


def targets_in_turn(common: dict, cache: Path, scratch: Path | None) -> list[tuple[str, Callable[[], dict]]]:
    """PyTorch, then per precision muai's OpenVINO row with the genai rows it is compared with right after it.

    ``scratch`` None: genai is not installed, its rows are left out.
    """
    targets = [("muai pytorch", lambda: run_worker({**common, "backend": "pytorch", "precision": ""}))]
    for precision, kv in (("FP32", "f32"), ("INT8", None)):
        mine = {**common, "backend": "openvino", "precision": precision}
        targets.append((f"muai openvino {precision}", lambda spec=mine: run_worker(spec)))
        if scratch is None:
            continue
        export = cache / (common["model"] if precision == "FP32" else f"{common['model']}-{precision.lower()}")
        folder = str(genai_dir(export, scratch / precision))
        for attention in ATTENTION_BACKENDS:
            properties = {"PERFORMANCE_HINT": "LATENCY", "ATTENTION_BACKEND": attention}
            properties.update({"KV_CACHE_PRECISION": kv} if kv else {})
            spec = {**common, "dir": folder, "properties": properties}
            targets.append((f"openvino-genai {precision} {attention}", lambda spec=spec: run_genai(spec)))
    return targets


def run_genai(spec: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", GENAI_WORKER, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def merged(rounds: list[dict]) -> dict:
    """One row from the rounds of a target: medians of the rounds' medians, the overall min and max."""
    good = [r for r in rounds if "error" not in r]
    if not good:
        return rounds[-1]
    row = dict(good[-1])
    for key, value in good[-1].items():
        if isinstance(value, dict) and "median" in value:
            row[key] = {
                "median": statistics.median(r[key]["median"] for r in good),
                "min": min(r[key]["min"] for r in good),
                "max": max(r[key]["max"] for r in good),
            }
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith(("_s", "_ms", "_mb")):
            row[key] = statistics.median(r[key] for r in good)
    return row


def paired(mine: list[dict], theirs: list[dict], key: str) -> list[float]:
    """muai / genai per round, for the rounds in which both ran (``key``: a number, or a spread's median)."""

    def value(row: dict) -> float:
        return row[key]["median"] if isinstance(row[key], dict) else row[key]

    return [value(a) / value(b) for a, b in zip(mine, theirs, strict=True) if "error" not in a | b]


def describe(ratios: list[float]) -> str:
    spread = f" (rounds {min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return f"{statistics.median(ratios):.2f}x{spread}"


def genai_dir(export: Path, scratch: Path) -> Path:
    """A folder that links the export's files and adds the OpenVINO tokenizer models LLMPipeline reads."""
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoTokenizer

    target = scratch / export.name
    target.mkdir(parents=True)
    for file in export.iterdir():
        if file.is_file():
            (target / file.name).symlink_to(file.resolve())
    tokenizer, detokenizer = convert_tokenizer(AutoTokenizer.from_pretrained(export), with_detokenizer=True)
    ov.save_model(tokenizer, target / "openvino_tokenizer.xml")
    ov.save_model(detokenizer, target / "openvino_detokenizer.xml")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=1, help="timed runs per target and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the targets take turns in each")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--out", default="bench-results/genai")
    parser.add_argument("--concurrency", help="comma-separated numbers of clients, e.g. 1,4,8,16: the concurrency mode")
    parser.add_argument("--cache-gb", type=int, default=1, help="genai's KV cache in GB (SchedulerConfig.cache_size)")
    args = parser.parse_args()
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2: a decode rate is timed between the first and the last token")

    config = load_config()
    cache = exports_root(
        resolve_model(args.model, config).models_dir, config.backend_settings("openvino").get("cache_dir")
    )
    common = {"model": args.model, "prompt": args.prompt, "new_tokens": args.new_tokens, "runs": args.runs,
              "warmup": args.warmup, "device": "cpu", "config": None}  # fmt: skip
    have_genai = find_spec("openvino_genai") and find_spec("openvino_tokenizers")
    if not have_genai:
        print("openvino-genai or openvino-tokenizers is not installed: genai rows skipped", file=sys.stderr)
    if args.concurrency is not None:
        return concurrency_main(args, parser, common, cache, genai_dir if have_genai else None)
    with tempfile.TemporaryDirectory() as scratch:
        targets = targets_in_turn(common, cache, Path(scratch) if have_genai else None)
        results: dict[str, list[dict]] = {label: [] for label, _ in targets}
        for round_ in range(args.rounds):
            # Targets take turns, in a rotated order each round: this machine drifts by +-15% over minutes.
            shift = round_ % len(targets)
            for label, run in targets[shift:] + targets[:shift]:
                print(f"round {round_ + 1}/{args.rounds}: {label}", file=sys.stderr, flush=True)
                results[label].append(run())
                print(f"      {summary(results[label][-1])}", file=sys.stderr, flush=True)
    rows = [{"target": label, **merged(results[label])} for label, _ in targets]
    relate(rows)
    print(report.table(rows))
    by_target = {row["target"]: row for row in rows if "error" not in row}
    for precision in ("FP32", "INT8"):
        mine = results[f"muai openvino {precision}"]
        for attention in ATTENTION_BACKENDS:
            theirs = results.get(f"openvino-genai {precision} {attention}")
            if theirs and (decode := paired(mine, theirs, "decode_tps")):
                ttft, cold = paired(mine, theirs, "ttft_ms"), paired(mine, theirs, "cold_ttft_ms")
                print(
                    f"{precision}: muai / genai {attention}, paired by round: "
                    f"decode {describe(decode)}, TTFT {describe(ttft)}, cold TTFT {describe(cold)}"
                )
        if row := by_target.get(f"muai openvino {precision}"):
            print(
                f"{precision}: muai vs PyTorch fp32: decode {row['speedup']:.2f}x, load {row['load_ratio']:.2f}x, "
                f"peak RSS {row['rss_ratio']:.2f}x"
            )
    title = f"{args.model}: muai vs openvino-genai, {args.new_tokens} new tokens"
    for path in report.write(rows, Path(args.out), title, {"model": args.model, **vars(args)}):
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
