"""Tiny models built offline once per session; each test runs in an empty directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from muai_pytorch.testing import build_tiny_model, build_tiny_seq2seq_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Paths of a random GPT-2 and a random llama-family model, with their tokenizers."""
    root = tmp_path_factory.mktemp("models")
    return {arch: str(build_tiny_model(root / arch, arch)) for arch in ("gpt2", "llama")}


@pytest.fixture(scope="session")
def eos_model(tmp_path_factory, tiny_models) -> str:
    """A GPT-2 whose every next token is EOS: the final norm outputs a constant aimed at EOS's embedding."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"])
    eos = model.config.eos_token_id
    with torch.no_grad():
        direction = torch.randn(model.config.n_embd)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(direction)
        model.transformer.wte.weight[eos] = direction * 50
    path = tmp_path_factory.mktemp("eos") / "gpt2-eos"
    model.save_pretrained(path)
    for file in Path(tiny_models["gpt2"]).iterdir():
        if file.name.startswith("tokenizer") or file.name == "chat_template.jinja":
            (path / file.name).write_bytes(file.read_bytes())
    return str(path)


@pytest.fixture(scope="session")
def tiny_seq2seq_models(tmp_path_factory) -> dict[str, str]:
    """Paths of a random T5 and a random BART, with their tokenizers."""
    root = tmp_path_factory.mktemp("seq2seq")
    return {arch: str(build_tiny_seq2seq_model(root / arch, arch)) for arch in ("t5", "bart")}
