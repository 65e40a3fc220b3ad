"""Tiny models exported once per session at every precision; each test runs in an empty directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from muai_core.config import parse_config
from muai_openvino.export.pipeline import export_model
from muai_pytorch.testing import build_tiny_model, build_tiny_seq2seq_model

MODELS = {"gpt2": "gpt2", "tiny-llama": "llama"}
PRECISIONS = ("FP32", "FP16", "INT8", "INT4")
#: Encoder-decoder models of ``seq2seq_store`` and the precisions each is exported at.
SEQ2SEQ_MODELS = {"t5": ("FP32", "FP16", "INT8"), "bart": ("FP32",)}


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """``models/{name}`` for each tiny model and ``models/openvino/{name}[-fp16|-int8|-int4]`` exports."""
    root = tmp_path_factory.mktemp("store")
    for name, arch in MODELS.items():
        build_tiny_model(root / "models" / name, arch)
    config = parse_config({"models_dir": str(root / "models")})
    for name in MODELS:
        for precision in PRECISIONS:
            export_model(name, config, precision, str(root / "models" / "openvino"))
    return root


@pytest.fixture(scope="session")
def seq2seq_store(tmp_path_factory) -> Path:
    """``models/{t5,bart}`` (tiny random encoder-decoder models) and their ``models/openvino`` exports."""
    root = tmp_path_factory.mktemp("seq2seq-store")
    config = parse_config({"models_dir": str(root / "models")})
    for name, precisions in SEQ2SEQ_MODELS.items():
        build_tiny_seq2seq_model(root / "models" / name, name)
        for precision in precisions:
            export_model(name, config, precision, str(root / "models" / "openvino"))
    return root


@pytest.fixture
def write_config(store, tmp_path):
    """Write a config that points at the session store; extra keys are merged into ``backend``."""

    def write(backend: dict | None = None, **top) -> str:
        openvino = {"cache_dir": str(store / "models" / "openvino")}
        backend = dict(backend or {})
        openvino.update(backend.pop("openvino", {}))
        data = {"models_dir": str(store / "models"), "backend": {"openvino": openvino, **backend}, **top}
        path = tmp_path / "system.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    return write
