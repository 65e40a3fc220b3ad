"""``muai verify``: one backend's outputs against another's on muai's prompt set (``muai_core.quality``).

Each backend loads the model in a manager of its own; a load that falls back to another backend is an error,
since the figures would describe the wrong one. Prints a table (and writes JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muai_core.bench.runner import Target
from muai_core.errors import ConfigurationError, ModelLoadError
from muai_core.manager import ModelManager
from muai_core.quality import BYTE_TOKENIZER, TOKENS, Bar, Harness, Quality, Runner

EXIT_MISSED = 2
#: The backend the runtime-option flags configure.
RUNTIME_BACKEND = "openvino"
HINT = "e.g. muai verify smollm2-135m --backends openvino:INT8,pytorch"


def register(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser(
        "verify", help="measure one backend's outputs against another's (agreement, first divergence, KL)"
    )
    verify.add_argument("model")
    verify.add_argument(
        "--backends",
        required=True,
        help="CANDIDATE,REFERENCE as BACKEND[:PRECISION], e.g. openvino:INT8,pytorch (the second is the reference)",
    )
    verify.add_argument("--kv-cache-precision", choices=("f32", "f16", "u8"), help="openvino's KV cache precision")
    verify.add_argument("--inference-precision", choices=("f32", "bf16", "f16"), help="openvino's compute precision")
    verify.add_argument(
        "--dynamic-quantization-group-size",
        type=int,
        metavar="N",
        help="openvino's dynamic quantization of activations: N values a scale, 0 off",
    )
    verify.add_argument("--tokens", type=int, default=TOKENS, help=f"greedy tokens per prompt (default {TOKENS})")
    verify.add_argument("--device", default="cpu")
    verify.add_argument("--json", help="also write the figures as JSON to this file")
    verify.add_argument("--max-kl", type=float, help="exit 2 when the mean KL is above this")
    verify.add_argument("--min-agreement", type=float, help="exit 2 when the greedy agreement is below this (0-1)")
    verify.set_defaults(func=cmd_verify)


@dataclass(frozen=True)
class Codec:
    encode: Callable[[str], Sequence[int]]
    decode: Callable[[Sequence[int]], str]


def cmd_verify(args: argparse.Namespace) -> int:
    candidate, reference = _targets(args.backends)
    if args.tokens < 1:
        raise ConfigurationError(f"--tokens must be at least 1, got {args.tokens}", hint="e.g. --tokens 64")
    if (args.dynamic_quantization_group_size or 0) < 0:
        raise ConfigurationError(
            f"--dynamic-quantization-group-size must be 0 (off) or more, got {args.dynamic_quantization_group_size}",
            hint="e.g. --dynamic-quantization-group-size 32",
        )
    options = {
        "kv_cache_precision": args.kv_cache_precision,
        "inference_precision": args.inference_precision,
        "dynamic_quantization_group_size": args.dynamic_quantization_group_size,
    }
    options = {key: value for key, value in options.items() if value is not None}
    if options and RUNTIME_BACKEND not in (candidate.backend, reference.backend):
        flags = ", ".join(f"--{key.replace('_', '-')}" for key in options)
        raise ConfigurationError(
            f"{flags} set {RUNTIME_BACKEND}'s runtime options, and --backends names no {RUNTIME_BACKEND} target",
            hint=f"drop {flags}, or add {RUNTIME_BACKEND} to --backends",
        )
    bar = _bar(args)
    managers = [_load(args, target, options) for target in (candidate, reference)]
    codec = _codec(args.model, managers)
    harness = Harness(_runner(managers[1], args.model), codec.encode, tokens=args.tokens)
    quality = harness.compare(_runner(managers[0], args.model))
    report = _report(args.model, candidate, reference, options, quality, codec)
    print(_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    missed = bar.failures(report["figures"]) if bar else []
    for reason in missed:
        print(f"muai verify: below the bar: {reason}", file=sys.stderr)
    return EXIT_MISSED if missed else 0


def _targets(text: str) -> tuple[Target, Target]:
    from muai_core.cli import bench_targets

    targets = bench_targets(text)
    if len(targets) != 2:
        raise ConfigurationError(f"--backends takes two targets, CANDIDATE,REFERENCE; got {text!r}", hint=HINT)
    return targets[0], targets[1]


def _bar(args: argparse.Namespace) -> Bar | None:
    from muai_core.quality import parse_bar

    values = {k: v for k, v in (("max_kl", args.max_kl), ("min_agreement", args.min_agreement)) if v is not None}
    if not values:
        return None
    try:
        return parse_bar(values, "the bar")
    except ConfigurationError as exc:
        raise ConfigurationError(
            "--max-kl must be >= 0 and --min-agreement from 0 to 1", hint="e.g. --max-kl 0.05 --min-agreement 0.8"
        ) from exc


def _load(args: argparse.Namespace, target: Target, options: dict[str, str]) -> ModelManager:
    settings = dict(options) if target.backend == RUNTIME_BACKEND else {}
    if target.precision:
        settings["precision"] = target.precision
    manager = ModelManager(device=args.device, backend=target.backend, backend_config=settings, config_path=args.config)
    loaded = manager.load_model(args.model, backend_override=target.backend)
    if loaded.backend_name != target.backend:
        why = next((a.reason for a in loaded.attempts if a.backend == target.backend and a.reason), "see muai explain")
        raise ModelLoadError(
            f"--backends: {target.label} did not load {args.model} (it fell back to {loaded.backend_name}): {why}",
            hint=f"muai explain {args.model} --backend {target.backend} shows why",
        )
    return manager


def _runner(manager: ModelManager, model: str) -> Runner:
    def greedy(prompt: str, tokens: int) -> tuple[int, ...]:
        result = manager.generate_result(
            model, prompt, max_new_tokens=tokens, do_sample=False, ignore_eos=True, return_full_text=False
        )
        return result.token_ids

    def logits(ids: Sequence[int]) -> Any:
        return np.asarray(manager.forward(model, {"input_ids": np.asarray([ids], dtype=np.int64)})["logits"])[0]

    return Runner(greedy, logits)


def _codec(model: str, managers: list[ModelManager]) -> Codec:
    """How the prompts become token ids: the model's tokenizer.json, else UTF-8 bytes where both say so."""
    digests = [manager.get_model_info(model)["model_info"].get("tokenizer_digest") for manager in managers]
    if None not in digests and digests[0] != digests[1]:
        raise ModelLoadError(
            f"the two backends tokenise {model} differently, so their tokens cannot be compared",
            hint="verify backends that load the same tokenizer",
        )
    source = managers[0].plan(model).source
    if source.is_local and (Path(source.source) / "tokenizer.json").is_file():
        from muai_core.text_codec import TextCodec

        codec = TextCodec(source.source, hint="the model's tokenizer files are damaged; pull it again")
        return Codec(codec.encode, lambda ids: codec.decode(ids, skip_special_tokens=False))
    if digests == [BYTE_TOKENIZER, BYTE_TOKENIZER]:
        return Codec(lambda text: list(text.encode("utf-8")), lambda ids: bytes(ids).decode("utf-8", "replace"))
    raise ModelLoadError(
        f"muai verify cannot tokenise the prompts for {model}: it has no local tokenizer.json",
        hint=f"pull the model first (muai pull {model}) so that its tokenizer is on disk",
    )


def _report(
    model: str, candidate: Target, reference: Target, options: dict[str, str], quality: Quality, codec: Codec
) -> dict[str, Any]:
    prompts = []
    for figures in quality.per_prompt:
        position = figures.first_divergence
        parted = position < min(len(figures.reference), len(figures.candidate))
        prompts.append(
            {
                "prompt": figures.prompt,
                "agreement": round(figures.agreement, 4),
                "first_divergence": position,
                "kl": round(figures.kl, 6),
                "reference_token": codec.decode([figures.reference[position]]) if parted else None,
                "candidate_token": codec.decode([figures.candidate[position]]) if parted else None,
            }
        )
    figures = {k: v for k, v in quality.record().items() if k != "per_prompt"}
    return {
        "model": model,
        "candidate": candidate.label,
        "reference": reference.label,
        "runtime_options": options,
        "figures": figures,
        "prompts": prompts,
    }


def _table(report: dict[str, Any]) -> str:
    f = report["figures"]
    options = ", ".join(f"{k} {v}" for k, v in report["runtime_options"].items())
    lines = [
        f"{report['model']}: {report['candidate']} against {report['reference']}"
        f"{f' ({options})' if options else ''}, {f['prompts']} prompts x {f['tokens']} greedy tokens",
        f"{'greedy agreement':<18} {f['agreement']:.1%}",
        f"{'first divergence':<18} {f['first_divergence']:.1f} (mean token position; {f['tokens']} = never)",
        f"{'KL (nats)':<18} {f['kl']:.5f} (mean, teacher forced)",
        f"{'top-1 (forced)':<18} {f['teacher_forced_agreement']:.1%}",
        "",
        f"{'#':>2}  {'parts at':>8}  {'KL':>8}  {'prompt':<36} reference -> candidate",
    ]
    for number, prompt in enumerate(report["prompts"], 1):
        text = prompt["prompt"].replace("\n", " ")
        text = text if len(text) <= 36 else text[:33] + "..."
        parted = prompt["reference_token"] is not None
        at = str(prompt["first_divergence"]) if parted else "never"
        tokens = f"{prompt['reference_token']!r} -> {prompt['candidate_token']!r}" if parted else ""
        lines.append(f"{number:>2}  {at:>8}  {prompt['kl']:>8.4f}  {text:<36} {tokens}")
    return "\n".join(lines)
