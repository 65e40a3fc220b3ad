"""``muai export``: the exporter's command line (also behind ``scripts/export_to_openvino.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.util import find_spec

from muai_core.config import load_config
from muai_core.errors import ConfigurationError, ModelLoadError
from muai_core.quality import Bar, parse_bar
from muai_openvino.export.compress import Compression
from muai_openvino.settings import PRECISIONS

AUTO_EXAMPLE = "e.g. muai export smollm2-135m --auto --max-kl 0.05"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="model name (models/{name} or config models:) or a local directory")
    parser.add_argument(
        "--precision", type=str.upper, choices=PRECISIONS, default="FP32", help="weights (default FP32)"
    )
    int4 = parser.add_argument_group("INT4 (NNCF weight compression)")
    int4.add_argument("--group-size", type=int, default=64, help="weights per scale: 32, 64 or 128 (default 64)")
    int4.add_argument("--sym", action="store_true", help="symmetric INT4 (default: asymmetric)")
    int4.add_argument("--ratio", type=float, default=1.0, help="share of layers in INT4, the rest INT8 (default 1)")
    int4.add_argument("--awq", action="store_true", help="AWQ on muai's calibration texts (data-aware)")
    int4.add_argument(
        "--scale-estimation", action="store_true", help="scale estimation on muai's calibration texts (data-aware)"
    )
    auto = parser.add_argument_group("--auto: the cheapest precision that meets a bar (INT4, INT8, FP16, FP32 in turn)")
    auto.add_argument("--auto", action="store_true", help="try each precision, keep the cheapest that meets the bar")
    auto.add_argument("--max-kl", type=float, help="the bar: mean KL against PyTorch at most this (nats)")
    auto.add_argument("--min-agreement", type=float, help="the bar: greedy agreement with PyTorch at least this (0-1)")
    parser.add_argument("--all", action="store_true", help="export every model listed under models: in the config")
    parser.add_argument(
        "--cache-dir",
        help="where exports go (default: backend.openvino.cache_dir, else the models directory's openvino/)",
    )
    parser.add_argument("--force", action="store_true", help="export again even if an up-to-date export exists")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to stateful OpenVINO IR (FP32, FP16, INT8 or INT4)")
    add_arguments(parser)
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    missing = [m for m in ("torch", "transformers", "muai_pytorch") if find_spec(m) is None]
    if missing:
        raise ModelLoadError(
            f"exporting needs {', '.join(missing)}", hint="pip install 'muai-openvino[export]' (inference does not)"
        )
    from muai_openvino.export.pipeline import export_model

    compression = _compression(args)
    bar = _bar(args)
    config = load_config(getattr(args, "config", None))
    names = _names(args, list(config.models))
    for name in names:
        if bar:
            from muai_openvino.export.auto import export_auto

            int4 = compression if compression.precision == "INT4" else None
            result = export_auto(name, config, bar, args.cache_dir, int4=int4)
        else:
            result = export_model(name, config, cache_dir=args.cache_dir, force=args.force, compression=compression)
        print(result.directory)
    return 0


def _compression(args: argparse.Namespace) -> Compression:
    if args.precision != "INT4" and args.group_size != Compression.group_size:
        raise ConfigurationError(
            f"--group-size applies to --precision INT4, not {args.precision}",
            hint="add --precision INT4, or drop --group-size",
        )
    return Compression(args.precision, args.group_size, args.sym, args.ratio, args.awq, args.scale_estimation)


def _bar(args: argparse.Namespace) -> Bar | None:
    """The bar of ``--auto``; --max-kl and --min-agreement mean nothing without it, and it needs one of them."""
    values = {k: v for k, v in (("max_kl", args.max_kl), ("min_agreement", args.min_agreement)) if v is not None}
    if not args.auto:
        if values:
            raise ConfigurationError("--max-kl and --min-agreement set the bar of --auto", hint="add --auto")
        return None
    if not values:
        raise ConfigurationError("--auto needs a bar: --max-kl and/or --min-agreement", hint=AUTO_EXAMPLE)
    if args.precision != "FP32" and args.precision != "INT4":
        raise ConfigurationError(f"--auto chooses the precision itself; drop --precision {args.precision}",
                                 hint=AUTO_EXAMPLE)  # fmt: skip
    try:
        return parse_bar(values, "the bar")
    except ConfigurationError:
        raise ConfigurationError(
            "--max-kl must be a number >= 0 and --min-agreement a share from 0 to 1", hint=AUTO_EXAMPLE
        ) from None


def _names(args: argparse.Namespace, configured: Sequence[str]) -> list[str]:
    if args.all and args.model:
        raise ConfigurationError("pass a model or --all, not both")
    if args.all:
        if not configured:
            raise ConfigurationError("--all exports the models under models: in the config, and it lists none")
        return list(configured)
    if not args.model:
        raise ConfigurationError("name a model to export", hint="e.g. muai export smollm2-135m, or --all")
    return [args.model]


def script_main(argv: Sequence[str] | None = None) -> int:
    """The original design's ``python scripts/export_to_openvino.py gpt2 --precision FP16``."""
    from muai_core.cli import run_command

    parser = argparse.ArgumentParser(prog="export_to_openvino.py", description="Export a model to OpenVINO IR.")
    add_arguments(parser)
    parser.add_argument("--config", help="config YAML (default: $MUAI_CONFIG or config/system.yaml)")
    parser.add_argument("--debug", action="store_true")
    return run_command(parser, run_export, argv)
