#!/usr/bin/env python3
"""Prompt-lookup decoding against plain greedy decoding on muai's OpenVINO backend, and against openvino-genai's
prompt-lookup pipeline on the same IR.

    python benchmarks/speculative.py smollm2-135m [--new-tokens 96] [--rounds 3] [--lookup 16]
        [--genai-lookups 4,8,16 | --no-genai]

Run it in a project folder whose ``models`` holds the model and its OpenVINO exports (FP32 and INT8). Every
prompt of the input-grounded set (texts to restate or edit) and of the open-ended set runs greedy, EOS
ignored, plain and with ``prompt_lookup``, in one process; rounds interleave the targets (their order flips
each round) and every ratio is taken within a round. It counts the runs whose plain and prompt-lookup token
ids are identical: with f32 arithmetic (the default here) muai keeps the KV cache in f32 and all were; with a
u8 cache (``kv_cache_precision: u8``) a verify step's rows round otherwise than one-token steps, which can flip a
near tie. Decode tok/s: new tokens after the first over the time from the first to the last. genai's rows
(``prompt_lookup=True``, the same ``num_assistant_tokens`` and n-gram size, the same inference and KV cache
precision) need openvino-genai and openvino-tokenizers. ``--genai-lookups`` runs genai at each of those
``num_assistant_tokens`` (default: ``--lookup``) and adds muai's ratio against genai's best count per round.

Draft-model mode (speed only), built offline from the model's tokenizer, target and draft both on
``--backend`` (openvino: exported at FP32 first; or pytorch):

    python benchmarks/speculative.py smollm2-135m --draft truncated [--target-layers 6] [--target-hidden 768]
    python benchmarks/speculative.py smollm2-135m --draft model [--backend pytorch]

The target is a random LLaMA of ``--target-layers`` x ``--target-hidden`` with the model's tokenizer; the
draft is either the target's first ``--draft-layers`` layers with its embeddings, norm and head
(``truncated``), or the model itself (``model``: SmolLM2-135M). Every prompt runs greedy, EOS ignored, plain
and with the draft, interleaved; it prints decode tok/s, the acceptance rate and tokens per verify call. What
the acceptance rate means here: the target's weights are random, so its greedy choices are not language. The
real model as draft predicts language and is almost never right: its rate (near 0) measures the overhead of
drafting and how fast the adaptive count stops proposing. The truncated draft agrees often only because in a
random pre-norm network the token's embedding dominates the residual stream, so a few random layers change
little: its rate says how alike two random networks are, nothing about text. The speed is what a draft of
that cost at that rate gives, and tokens are identical to plain decoding's in every run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

from muai_core import ModelManager, PerformanceMonitor
from muai_core.drafting import DRAFT_TOKENS
from muai_core.speculative import MAX_NGRAM

PASSAGE = (
    "The lighthouse stands on a rocky island three miles from the coast. Its keeper, Ada Marsh, climbs the 112 "
    "steps every evening to light the lamp, and every morning she writes the weather, the ships she saw and the "
    "state of the lamp in a leather logbook. Supplies arrive by boat once a month, weather permitting."
)
CODE = (
    "def total_price(items, tax_rate):\n    subtotal = 0\n    for item in items:\n"
    "        subtotal += item.price * item.quantity\n    tax = subtotal * tax_rate\n    return subtotal + tax\n"
)
#: Prompts that restate or edit a given text: the answer mostly copies its input.
GROUNDED = (
    f"Text: {PASSAGE}\nThe same text, copied exactly:\n",
    f"Text: {PASSAGE}\nThe same text with Ada Marsh renamed to Ben Hale:\n",
    f"Text: {PASSAGE}\nThe same text in the past tense:\n",
    f"Original code:\n{CODE}\nThe same code with the variable subtotal renamed to net:\n",
    f"Original code:\n{CODE}\nThe same code with a docstring added:\n",
    "Notes: milk, eggs, flour, sugar, butter, apples, rice, tea, coffee, salt.\n"
    "The notes as a numbered list:\n1. milk\n",
    f"Report: {PASSAGE}\nQuote the sentence about the logbook, then the one about supplies:\n",
    "Email: Hi team, the release moves from Monday to Wednesday because the test servers are down. Please update "
    "your plans and tell me if Wednesday does not work for you. Thanks, Maria\n"
    "The same email with Wednesday changed to Thursday:\n",
)
#: Prompts whose answer is new text: candidates are rare and mostly wrong.
OPEN = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "The history of the bicycle begins",
    "Ten ideas for a rainy afternoon:",
    "Explain why the sky is blue to a child.",
)

GENAI_WORKER = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
import openvino_genai as genai
pipe = genai.LLMPipeline(spec["dir"], "CPU", prompt_lookup=True, **spec["properties"])
config = genai.GenerationConfig(max_new_tokens=spec["new_tokens"], ignore_eos=True, do_sample=False)
config.num_assistant_tokens = spec["lookup"]
config.max_ngram_size = spec["ngram"]
config.apply_chat_template = False
rates = {}
for prompt in spec["prompts"][:1] + spec["prompts"]:  # the first run warms up
    result = pipe.generate([prompt], config)
    stamps = result.perf_metrics.raw_metrics.m_new_token_times
    rates[prompt] = (spec["new_tokens"] - 1) / ((stamps[-1] - stamps[0]) / 1000)
print(json.dumps(rates))
"""


def decode_rate(result) -> float:
    """New tokens after the first over the seconds from the first to the last."""
    return (result.new_tokens - 1) / sum(result.token_latencies_s)


def run_muai(managers: dict, prompts: tuple[str, ...], args, flip: bool) -> dict:
    """One round: each prompt, each precision, plain and prompt lookup (their order flipped on ``flip``)."""
    rows: dict = {}
    modes = (0, args.lookup)[:: -1 if flip else 1]
    for precision, manager in managers.items():
        for prompt in prompts:
            got = {}
            for lookup in modes:
                got[lookup] = manager.generate_result(
                    args.model, prompt, max_new_tokens=args.new_tokens, ignore_eos=True, prompt_lookup=lookup
                )
            plain, fast = got[0], got[args.lookup]
            rows[(precision, prompt)] = {
                "identical": plain.token_ids == fast.token_ids,
                "plain": decode_rate(plain),
                "lookup": decode_rate(fast),
                "accepted": fast.accepted_tokens,
                "proposed": fast.draft_tokens,
                "verify_calls": fast.verify_calls,
            }
    return rows


def run_genai(args, precision: str, prompts: tuple[str, ...], scratch: Path, lookup: int) -> dict:
    import subprocess

    sys.path.insert(0, str(Path(__file__).parent))
    from openvino_vs_genai import genai_dir

    name = args.model if precision == "FP32" else f"{args.model}-{precision.lower()}"
    folder = scratch / precision
    if not folder.exists():
        genai_dir(Path("models/openvino") / name, folder)
    properties = {"INFERENCE_PRECISION_HINT": args.inference_precision} if args.inference_precision else {}
    if args.inference_precision == "f32":  # the KV cache muai keeps with f32 arithmetic
        properties["KV_CACHE_PRECISION"] = "f32"
    spec = {"dir": str(folder / name), "new_tokens": args.new_tokens, "lookup": lookup, "ngram": MAX_NGRAM,
            "prompts": list(prompts), "properties": properties}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", GENAI_WORKER, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"genai {precision} at num_assistant_tokens={lookup} failed: {done.stderr[-400:]}", file=sys.stderr)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_pair(tokenizer_dir: Path, root: Path, layers: int, hidden: int, draft_layers: int) -> None:
    """``root/target``: a random LLaMA with the tokenizer of ``tokenizer_dir``; ``root/truncated``: its first
    ``draft_layers`` layers with the same embeddings, final norm and head."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    heads = hidden // 64
    shape = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 64 * 64,
                 num_attention_heads=heads, num_key_value_heads=heads // 4 if heads % 4 == 0 else heads,
                 max_position_embeddings=2048,
                 tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                 eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    target = LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, **shape)).eval()
    draft = LlamaForCausalLM(LlamaConfig(num_hidden_layers=draft_layers, **shape)).eval()
    draft.load_state_dict(target.state_dict(), strict=False)  # the layers past draft_layers are left out
    for name, model in (("target", target), ("truncated", draft)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)


def run_draft(args) -> int:
    """Draft-model mode: plain greedy against the draft on a random target (see the module's docstring)."""
    import yaml

    from muai_core.config import load_config
    from muai_core.model_source import resolve_model

    tokenizer_dir = Path(resolve_model(args.model, load_config()).source)
    root = Path(tempfile.mkdtemp(prefix="muai-draft-"))
    build_pair(tokenizer_dir, root, args.target_layers, args.target_hidden, args.draft_layers)
    draft = "truncated" if args.draft == "truncated" else "model"
    models = {
        "target": {"pytorch_path": str(root / "target"), "draft": draft, "draft_tokens": args.lookup or DRAFT_TOKENS},
        "truncated": {"pytorch_path": str(root / "truncated")},
        "model": {"pytorch_path": str(tokenizer_dir)},
    }
    config = {"models": models, "backend": {"openvino": {"cache_dir": str(root / "openvino"), "prefix_cache": False}}}
    if args.inference_precision:
        config["backend"]["openvino"]["inference_precision"] = args.inference_precision
    (root / "system.yaml").write_text(yaml.safe_dump(config))
    if args.backend == "openvino":
        from muai_openvino.export.pipeline import export_model

        for name in ("target", draft):
            export_model(name, load_config(str(root / "system.yaml")), "FP32")
    manager = ModelManager(backend=args.backend, config_path=str(root / "system.yaml"), monitor=PerformanceMonitor())
    manager.generate("target", "warm up", max_new_tokens=8)
    kwargs = dict(max_new_tokens=args.new_tokens, ignore_eos=True)
    rows = []
    for index in range(args.rounds):
        for prompt in GROUNDED + OPEN:
            got = {}
            for mode in ("", draft)[:: -1 if index % 2 else 1]:
                got[mode] = manager.generate_result("target", prompt, draft=mode, **kwargs)
            rows.append((got[""], got[draft]))
    calls = sum(fast.verify_calls for _, fast in rows)
    accepted, proposed = sum(fast.accepted_tokens for _, fast in rows), sum(fast.draft_tokens for _, fast in rows)
    report = {
        "cpu": _cpu(),
        "backend": args.backend,
        "target": f"random llama {args.target_layers} layers x {args.target_hidden}",
        "draft": f"its first {args.draft_layers} layer(s)" if draft == "truncated" else f"{args.model}",
        "plain_tps": round(statistics.median(decode_rate(plain) for plain, _ in rows), 1),
        "draft_tps": round(statistics.median(decode_rate(fast) for _, fast in rows), 1),
        "speedup": _spread([decode_rate(fast) / decode_rate(plain) for plain, fast in rows]),
        "acceptance_rate": round(accepted / proposed, 3) if proposed else None,
        "tokens_per_verify": round((accepted + calls) / calls, 2) if calls else None,
        "identical_tokens": f"{sum(p.token_ids == f.token_ids for p, f in rows)}/{len(rows)} runs",
        "unused": manager.get_model_info("target")["draft"]["unused"],
    }
    print(json.dumps(report, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--lookup",
        type=int,
        help="most tokens proposed at a time: prompt_lookup (default 16), draft_tokens (default 8)",
    )
    parser.add_argument("--precisions", default="FP32,INT8")
    parser.add_argument("--no-genai", action="store_true")
    parser.add_argument("--genai-lookups", help="genai's num_assistant_tokens to run, e.g. 4,8,16 (default: --lookup)")
    parser.add_argument(
        "--inference-precision", default="f32", help="f32 (the default) or '' for the CPU's choice (bf16 on some)"
    )
    parser.add_argument("--out", default="bench-results/speculative.json")
    parser.add_argument("--draft", choices=("truncated", "model"), help="draft-model mode (see above)")
    parser.add_argument("--target-layers", type=int, default=6)
    parser.add_argument("--target-hidden", type=int, default=768)
    parser.add_argument("--draft-layers", type=int, default=1)
    parser.add_argument("--backend", choices=("openvino", "pytorch"), default="openvino", help="draft mode's backend")
    args = parser.parse_args()
    if args.draft:
        return run_draft(args)
    args.lookup = args.lookup or 16
    precisions = args.precisions.split(",")
    managers = {}
    for precision in precisions:
        settings = {"precision": precision, "prefix_cache": False}  # a repeated prompt must not hit the cache
        if args.inference_precision:
            settings["inference_precision"] = args.inference_precision
        managers[precision] = ModelManager(backend="openvino", backend_config=settings, monitor=PerformanceMonitor())
        managers[precision].generate(args.model, "warm up", max_new_tokens=8)
    genai = not args.no_genai and find_spec("openvino_genai") and find_spec("openvino_tokenizers")
    genai_lookups = [int(k) for k in (args.genai_lookups or "").split(",") if k.strip()] or [args.lookup]
    scratch = Path(tempfile.mkdtemp(prefix="muai-spec-"))
    rounds: list[dict] = []
    for index in range(args.rounds):
        started = time.perf_counter()
        rows = {name: run_muai(managers, prompts, args, flip=index % 2 == 1) for name, prompts in
                (("grounded", GROUNDED), ("open", OPEN))}  # fmt: skip
        if genai:
            for precision in precisions:
                for lookup in genai_lookups:
                    rates = run_genai(args, precision, GROUNDED + OPEN, scratch, lookup)
                    for (_, (p, prompt)), row in _flat(rows):
                        if p == precision and prompt in rates:
                            row.setdefault("genai", {})[lookup] = rates[prompt]
        rounds.append(rows)
        print(f"round {index + 1}/{args.rounds}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    report = summarise(rounds, precisions, args.lookup)
    report["machine"] = {"cpu": _cpu(), "python": platform.python_version()}
    report["settings"] = {"new_tokens": args.new_tokens, "prompt_lookup": args.lookup, "rounds": args.rounds,
                          "genai_lookups": genai_lookups if genai else []}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if find_spec("matplotlib"):
        plot(report, Path(args.out).with_suffix(".png"), f"{args.model}, {args.new_tokens} new tokens, greedy")
    return 0


def plot(report: dict, path: Path, title: str) -> None:
    """Decode tok/s, plain against prompt lookup (and genai's at its best count), per prompt set and precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {key: row for key, row in report.items() if "plain_tps" in row}
    places = range(len(rows))
    genai = all(r.get("genai_best_tps") for r in rows.values())
    width = 0.27 if genai else 0.4
    figure, axis = plt.subplots(figsize=(8, 4.5))
    axis.bar([x - width for x in places] if genai else [x - 0.2 for x in places],
             [r["plain_tps"] for r in rows.values()], width, label="muai, plain greedy")  # fmt: skip
    bars = axis.bar(places if genai else [x + 0.2 for x in places], [r["lookup_tps"] for r in rows.values()], width,
                    label=f"muai, prompt lookup (k ≤ {report['settings']['prompt_lookup']})")  # fmt: skip
    if genai:
        axis.bar([x + width for x in places], [r["genai_best_tps"] for r in rows.values()], width,
                 label="openvino-genai prompt lookup, its best k")  # fmt: skip
    for bar, row in zip(bars, rows.values(), strict=True):
        axis.annotate(row["speedup"].split()[0], (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")  # fmt: skip
    axis.set_xticks(list(places), list(rows))
    axis.set_ylabel("decode tokens/s (median of rounds)")
    axis.set_title(f"{title}\n{report['machine']['cpu']}")
    axis.margins(y=0.2)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _flat(rows: dict):
    for name, by_key in rows.items():
        for key, row in by_key.items():
            yield (name, key), row


def summarise(rounds: list[dict], precisions: list[str], lookup: int) -> dict:
    """Per set and precision: medians over rounds of the per-round geometric means of each prompt's ratio;
    against genai: at muai's count, at each count run, and at the count best for genai in that round."""
    out: dict = {}
    for name in ("grounded", "open"):
        for precision in precisions:
            speedups, plain, rate, accepted, proposed, calls, same = [], [], [], 0, 0, 0, []
            vs_genai: dict[int, list[float]] = {}
            best: list[float] = []
            best_rate: list[float] = []  # genai's mean tok/s at its best count of the round
            for rows in rounds:
                mine = [row for (p, _), row in rows[name].items() if p == precision]
                speedups.append(_geomean([r["lookup"] / r["plain"] for r in mine]))
                counts = set.intersection(*(set(r.get("genai", ())) for r in mine))
                ratios = {k: _geomean([r["lookup"] / r["genai"][k] for r in mine]) for k in sorted(counts)}
                for k, ratio in ratios.items():
                    vs_genai.setdefault(k, []).append(ratio)
                if ratios:
                    count = min(ratios, key=ratios.__getitem__)
                    best.append(ratios[count])
                    best_rate.append(statistics.fmean(r["genai"][count] for r in mine))
                plain.append(statistics.fmean(r["plain"] for r in mine))
                rate.append(statistics.fmean(r["lookup"] for r in mine))
                accepted += sum(r["accepted"] for r in mine)
                proposed += sum(r["proposed"] for r in mine)
                calls += sum(r["verify_calls"] for r in mine)
                same += [r["identical"] for r in mine]
            out[f"{name} {precision}"] = {
                "plain_tps": round(statistics.median(plain), 1),
                "lookup_tps": round(statistics.median(rate), 1),
                "speedup": _spread(speedups),
                "vs_genai_lookup": _spread(vs_genai[lookup]) if lookup in vs_genai else None,
                "vs_genai_by_count": {k: _spread(v) for k, v in vs_genai.items()},
                "vs_genai_best_count": _spread(best) if best else None,
                "genai_best_tps": round(statistics.median(best_rate), 1) if best_rate else None,
                "acceptance_rate": round(accepted / proposed, 3) if proposed else None,
                "tokens_per_verify": round((accepted + calls) / calls, 2) if calls else None,
                "identical_tokens": f"{sum(same)}/{len(same)} runs",
            }
    return out


def _geomean(values: list[float]) -> float:
    return statistics.geometric_mean(values)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x (rounds {min(values):.2f}-{max(values):.2f})"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
