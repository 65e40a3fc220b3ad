"""``muai export``: the exporter's command line (also behind ``scripts/export_to_openvino.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.util import find_spec

from muai_core.config import load_config
from muai_core.errors import ConfigurationError, ModelLoadError
from muai_openvino.settings import PRECISIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="model name (models/{name} or config models:) or a local directory")
    parser.add_argument(
        "--precision", type=str.upper, choices=PRECISIONS, default="FP32", help="weights (default FP32)"
    )
    parser.add_argument("--all", action="store_true", help="export every model listed under models: in the config")
    parser.add_argument(
        "--cache-dir",
        help="where exports go (default: backend.openvino.cache_dir, else the models directory's openvino/)",
    )
    parser.add_argument("--force", action="store_true", help="export again even if an up-to-date export exists")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to stateful OpenVINO IR (FP32, FP16 or INT8)")
    add_arguments(parser)
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    missing = [m for m in ("torch", "transformers", "muai_pytorch") if find_spec(m) is None]
    if missing:
        raise ModelLoadError(
            f"exporting needs {', '.join(missing)}", hint="pip install 'muai-openvino[export]' (inference does not)"
        )
    from muai_openvino.export.pipeline import export_model

    config = load_config(getattr(args, "config", None))
    names = _names(args, list(config.models))
    for name in names:
        result = export_model(name, config, args.precision, args.cache_dir, force=args.force)
        print(result.directory)
    return 0


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
