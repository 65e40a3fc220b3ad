"""Tiny random llama and GPT-2 models, built offline once per session; each test runs in an empty directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from muai_pytorch.testing import build_tiny_model


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """``gpt2`` and ``llama`` in fp32, ``llama-bf16`` with bf16 weights."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("models")
    for arch in ("gpt2", "llama"):
        build_tiny_model(root / arch, arch)
    bf16 = AutoModelForCausalLM.from_pretrained(root / "llama", dtype=torch.bfloat16)
    bf16.save_pretrained(root / "llama-bf16")
    for file in (root / "llama").iterdir():
        if file.name.startswith("tokenizer") or file.suffix == ".jinja":
            (root / "llama-bf16" / file.name).write_bytes(file.read_bytes())
    return root
