"""CLI commands that muai-pytorch adds to ``muai``."""

from __future__ import annotations

import argparse

from muai_core.config import load_config
from muai_core.model_source import home_models_dir
from muai_pytorch.pull import BUILTIN, DEFAULT_MODEL, pull


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pull", help="put a model under the models directory as safetensors")
    parser.add_argument(
        "source",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"built-in name ({', '.join(BUILTIN)}), .gguf file, local HF directory or hub id",
    )
    parser.add_argument("--name", help="name under the models directory (default: from the source)")
    parser.add_argument(
        "--models-dir",
        help="models directory (default: the project's models_dir, else the user's muai home)",
    )
    parser.add_argument("--force", action="store_true", help="pull again even if the model is there")
    parser.set_defaults(func=run_pull)


def run_pull(args: argparse.Namespace) -> int:
    models_dir = args.models_dir or home_models_dir(load_config(args.config))
    print(pull(args.source, models_dir, args.name, args.force))
    return 0
