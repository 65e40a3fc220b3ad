"""The precision table of README.md: each export and runtime setting against the FP32 reference.

    python benchmarks/precision_table.py --models-dir models --model smollm2-135m --out precision

The reference is the model's FP32 export (``muai export NAME``), which its own export measured token for token
against PyTorch on the same prompts (agreement 100%, KL 0): OpenVINO f32 runs them faster than PyTorch. The
INT8 rows run the export ``muai export --precision INT8`` wrote (``{models}/openvino/{model}-int8``: make it
first); FP16, NNCF's INT8 and the INT4 variants are written from the FP32 IR
(``{models}/openvino/{model}-{variant}``). Each is measured with ``muai_core.quality``; then
decode speed and peak RSS of each row are timed in a process of its own (``muai bench``'s worker), PyTorch
first, all in one run. Rows are written to ``precision.json`` as they finish.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import openvino as ov
import yaml

from muai_core.bench.runner import run_worker
from muai_core.contracts import LoadRequest
from muai_core.progress import Progress
from muai_core.quality import Harness
from muai_core.text_codec import TextCodec
from muai_openvino import runtime
from muai_openvino.export.compress import Compression, compress
from muai_openvino.export.pipeline import file_records, write_manifest
from muai_openvino.export.validate import openvino_runner
from muai_openvino.export_layout import MANIFEST, XML

#: NNCF's INT8_ASYM, measured against muai's INT8 (which export writes).
NNCF_INT8 = Compression("INT8")
#: name: (compression, or the row whose export it runs; backend.openvino settings); measured in this order
VARIANTS = {
    "fp32": ("fp32", {}),
    "fp16": (Compression("FP16"), {}),
    "int8": ("int8", {}),
    "int8-nncf": (NNCF_INT8, {}),
    "int8-f32": ("int8", {"inference_precision": "f32"}),
    "int8-nncf-f32": ("int8-nncf", {"inference_precision": "f32"}),
    "int8-f32-kv-u8": ("int8", {"inference_precision": "f32", "kv_cache_precision": "u8"}),
    "int8-dq-off": ("int8", {"dynamic_quantization_group_size": 0}),
    "int4-asym-g64": (Compression("INT4", 64), {}),
    "int4-asym-g128": (Compression("INT4", 128), {}),
    "int4-asym-g64-awq-se": (Compression("INT4", 64, awq=True, scale_estimation=True), {}),
    "int4-sym-g64": (Compression("INT4", 64, symmetric=True), {}),
    "fp32-bf16": ("fp32", {"inference_precision": "bf16", "attention": "stateful"}),  # paged: KV must be bf16
}
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", default="precision")
    parser.add_argument("--rows", help="comma-separated rows to measure (default: all)")
    parser.add_argument("--timed", help="comma-separated rows to time (default: all measured)")
    parser.add_argument("--time-only", action="store_true", help="time the rows of an earlier run's precision.json")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "precision.json"
    rows = json.loads(results.read_text()) if results.is_file() else {}
    if not args.time_only:
        measure(args, rows, results)
    speed(args, rows, out)
    results.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


def measure(args: argparse.Namespace, rows: dict, results: Path) -> None:
    exports = Path(args.models_dir) / "openvino"
    fp32 = exports / args.model
    int8 = exports / f"{args.model}-int8"
    directories = {"fp32": fp32, **({"int8": int8} if (int8 / XML).is_file() else {})}
    wanted = args.rows.split(",") if args.rows else list(VARIANTS)
    reference = runtime.load(_request(args.model, fp32, {}))
    harness = Harness(openvino_runner(reference), TextCodec(fp32, hint="export the model again").encode)
    progress = Progress("precision")
    for name, (made, settings) in VARIANTS.items():
        if isinstance(made, Compression):
            directories[name] = _compressed(fp32, exports / f"{args.model}-{name}", made)
        directory = directories.get(made if isinstance(made, str) else name)
        if name not in wanted or directory is None:
            continue
        handle = runtime.load(_request(args.model, directory, settings))
        try:
            figures = harness.compare(openvino_runner(handle)).record()
            figures["properties"] = dict(handle.properties)
        finally:
            runtime.unload(handle)
        rows[name] = {"directory": str(directory), "settings": settings, "quality": figures}
        progress.say(f"{name}: agreement {figures['agreement']:.1%}, KL {figures['kl']:.4g}")
        results.write_text(json.dumps(rows, indent=2) + "\n")
    runtime.unload(reference)


def _request(model: str, directory: Path, settings: dict) -> LoadRequest:
    return LoadRequest(model, "transformers", str(directory), True, "CPU", settings, {"openvino_path": str(directory)})


def _compressed(fp32: Path, directory: Path, compression: Compression) -> Path:
    """``directory``: the FP32 export's IR compressed as ``compression`` (kept when already written)."""
    if (directory / MANIFEST).is_file():
        return directory
    from transformers import AutoTokenizer

    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(fp32, directory, ignore=shutil.ignore_patterns("openvino_model.*", MANIFEST))
    model = ov.Core().read_model(fp32 / XML)
    if compression is NNCF_INT8:
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    else:
        model = compress(model, compression, AutoTokenizer.from_pretrained(fp32))
    ov.save_model(model, directory / XML, compress_to_fp16=compression.precision == "FP16")
    manifest = json.loads((fp32 / MANIFEST).read_text())
    manifest.update(precision=compression.precision, compression=compression.record(), validation=None)
    manifest["files"] = file_records(directory, sorted(p.name for p in directory.iterdir() if p.is_file()))
    write_manifest(directory, manifest)
    return directory


def speed(args: argparse.Namespace, rows: dict, out: Path) -> None:
    """Decode tok/s and peak RSS of each row in a process of its own, PyTorch first."""
    base = {"prompt": PROMPT, "new_tokens": args.new_tokens, "runs": args.runs, "warmup": 1, "device": "cpu"}
    configs = out / "configs"
    configs.mkdir(exist_ok=True)
    rows.pop("pytorch", None)
    timed = args.timed.split(",") if args.timed else list(rows)
    reference = run_worker({**base, "model": args.model, "backend": "pytorch", "precision": "",
                            "config": _config(configs / "pytorch.yaml", args, {}, {})})  # fmt: skip
    for name, row in rows.items():
        if name not in timed:
            continue
        alias = f"{args.model}-{name}"
        models = {alias: {"pytorch_path": str(Path(args.models_dir) / args.model), "openvino_path": row["directory"]}}
        config = _config(configs / f"{name}.yaml", args, models, row["settings"])
        row["speed"] = run_worker({**base, "model": alias, "backend": "openvino", "precision": "", "config": config})
        Progress("precision").say(f"{name}: {row['speed'].get('decode_tps') or row['speed']}")
    rows["pytorch"] = {"speed": reference}


def _config(path: Path, args: argparse.Namespace, models: dict, settings: dict) -> str:
    data = {"models_dir": args.models_dir, "models": models, "backend": {"openvino": settings}}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def table(rows: dict) -> str:
    reference = rows["pytorch"]["speed"]["decode_tps"]["median"]
    lines = [
        "| export / setting | compute / KV cache | weights MiB | decode tok/s | vs PyTorch | peak RSS MiB "
        "| greedy agreement | first divergence | KL |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| PyTorch FP32 | f32 / f32 | | {reference:.1f} | 1.00x | {rows['pytorch']['speed']['peak_rss_mb']:.0f} "
        "| | | |",
    ]
    for name, row in rows.items():
        if name == "pytorch":
            continue
        speed, q = row.get("speed", {}), row["quality"]
        tps = (speed.get("decode_tps") or {}).get("median")
        timing = f"{tps:.1f} | {tps / reference:.2f}x | {speed['peak_rss_mb']:.0f}" if tps else "- | - | -"
        runtime_ = f"{q['properties'].get('INFERENCE_PRECISION_HINT')} / {q['properties'].get('KV_CACHE_PRECISION')}"
        weights = sum(f.stat().st_size for f in Path(row["directory"]).glob("*.bin")) / 2**20
        lines.append(
            f"| {name} | {runtime_} | {weights:.0f} | {timing} | {q['agreement']:.1%} | {q['first_divergence']:.1f} "
            f"| {q['kl']:.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
