"""The precision table of README.md: each export and runtime setting against PyTorch FP32.

    python benchmarks/precision_table.py --models-dir models --model smollm2-135m [--old-int8 DIR] --out precision

Exports every variant from one PyTorch load (``models/openvino/{model}-{variant}``), measures each with
``muai_core.quality`` against the PyTorch FP32 reference (continuations computed once), then times decode and
peak RSS of each in a process of its own (``muai bench``'s worker), PyTorch first, all in this one run.
``--old-int8`` names an export made by muai's earlier hand-written INT8 to measure beside NNCF's.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from muai_core.bench.runner import run_worker
from muai_core.config import parse_config
from muai_core.contracts import LoadRequest
from muai_core.progress import Progress
from muai_openvino import runtime
from muai_openvino.export.compress import Compression
from muai_openvino.export.pipeline import Location, load_source, locate, write_export
from muai_openvino.export.validate import openvino_runner

#: name: (compression, or the export another row uses; backend.openvino settings)
VARIANTS = {
    "fp32": (Compression("FP32"), {}),
    "fp32-bf16": ("fp32", {"inference_precision": "bf16"}),
    "int8-nncf": (Compression("INT8"), {}),
    "int8-nncf-f32": ("int8-nncf", {"inference_precision": "f32"}),
    "int8-nncf-kv-u8": ("int8-nncf", {"kv_cache_precision": "u8"}),
    "int4-asym-g64": (Compression("INT4", 64), {}),
    "int4-asym-g128": (Compression("INT4", 128), {}),
    "int4-sym-g64": (Compression("INT4", 64, symmetric=True), {}),
    "int4-asym-g64-awq-se": (Compression("INT4", 64, awq=True, scale_estimation=True), {}),
}
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--old-int8", help="an export by the earlier hand-written INT8")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", default="precision")
    parser.add_argument("--timed", help="comma-separated rows to time (default: all); the others keep their figures")
    parser.add_argument("--time-only", action="store_true", help="time the rows of an earlier run's precision.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.time_only:
        rows = json.loads((out / "precision.json").read_text())
        speed(args, rows, out)
        (out / "precision.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(table(rows))
        return
    config = parse_config({"models_dir": args.models_dir})
    where = locate(args.model, config, None)
    progress = Progress("precision")
    source = load_source(where.source_dir, progress)
    directories, rows = {}, {}
    if args.old_int8:
        directories["int8-old"] = Path(args.old_int8)
        VARIANTS["int8-old"] = ("int8-old", {})
    for name, (compression, _) in VARIANTS.items():
        if isinstance(compression, Compression):
            directories[name] = where.root / f"{where.label}-{name}"
            shutil.rmtree(directories[name], ignore_errors=True)
            directories[name].mkdir(parents=True)
            write_export(source, Location(where.source_dir, where.root, where.label, where.digest), compression,
                         directories[name], progress)  # fmt: skip
    for name, (compression, settings) in VARIANTS.items():
        directory = directories[compression if isinstance(compression, str) else name]
        handle = runtime.load(LoadRequest(args.model, "transformers", str(directory), True, "CPU", settings,
                                          {"openvino_path": str(directory)}))  # fmt: skip
        try:
            figures = source.harness.compare(openvino_runner(handle)).record()
            figures["properties"] = dict(handle.properties)
        finally:
            runtime.unload(handle)
        rows[name] = {"directory": str(directory), "settings": settings, "quality": figures}
        progress.say(f"{name}: agreement {figures['agreement']:.1%}, KL {figures['kl']:.4f}")
        (out / "precision.json").write_text(json.dumps(rows, indent=2) + "\n")
    del source
    speed(args, rows, out)
    (out / "precision.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


def speed(args: argparse.Namespace, rows: dict, out: Path) -> None:
    """Decode tok/s and peak RSS of each row in a process of its own, PyTorch first."""
    base = {"prompt": PROMPT, "new_tokens": args.new_tokens, "runs": args.runs, "warmup": 1, "device": "cpu"}
    configs = out / "configs"
    configs.mkdir(exist_ok=True)
    reference = run_worker({**base, "model": args.model, "backend": "pytorch", "precision": "",
                            "config": _config(configs / "pytorch.yaml", args, {}, {})})  # fmt: skip
    rows["pytorch"] = {"speed": reference}
    timed = args.timed.split(",") if args.timed else list(rows)
    for name, row in rows.items():
        if name == "pytorch" or name not in timed:
            continue
        alias = f"{args.model}-{name}"
        models = {alias: {"pytorch_path": str(Path(args.models_dir) / args.model), "openvino_path": row["directory"]}}
        config = _config(configs / f"{name}.yaml", args, models, row["settings"])
        row["speed"] = run_worker({**base, "model": alias, "backend": "openvino", "precision": "", "config": config})
        Progress("precision").say(f"{name}: {row['speed'].get('decode_tps') or row['speed']}")


def _config(path: Path, args: argparse.Namespace, models: dict, settings: dict) -> str:
    data = {"models_dir": args.models_dir, "models": models, "backend": {"openvino": settings}}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def table(rows: dict) -> str:
    reference = rows["pytorch"]["speed"]["decode_tps"]["median"]
    lines = [
        "| export / setting | decode tok/s | vs PyTorch | peak RSS MiB | greedy agreement | first divergence | KL |",
        "|---|---|---|---|---|---|---|",
        f"| PyTorch FP32 | {reference:.1f} | 1.00x | {rows['pytorch']['speed']['peak_rss_mb']:.0f} | | | |",
    ]
    for name, row in rows.items():
        if name == "pytorch":
            continue
        speed, q = row.get("speed", {}), row["quality"]
        tps = (speed.get("decode_tps") or {}).get("median")
        timing = f"{tps:.1f} | {tps / reference:.2f}x | {speed['peak_rss_mb']:.0f}" if tps else "- | - | -"
        lines.append(f"| {name} | {timing} | {q['agreement']:.1%} | {q['first_divergence']:.1f} | {q['kl']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
