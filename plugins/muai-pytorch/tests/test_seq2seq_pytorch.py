"""Encoder-decoder models (T5, BART) on the pytorch backend, against transformers' own generate and forward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from muai_core.contracts import GenerationRequest, LoadRequest
from muai_core.errors import ModelLoadError
from muai_pytorch import generation, loading

PROMPTS = ("The capital of France", "Hello world! This is a tiny model", "0 1 2 3")


@pytest.fixture(params=["t5", "bart"])
def seq2seq(request, tiny_seq2seq_models):
    path = tiny_seq2seq_models[request.param]
    handle = loading.load(LoadRequest(request.param, "transformers", path, True, "cpu"))
    yield handle, AutoModelForSeq2SeqLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    loading.unload(handle)


def test_greedy_tokens_equal_transformers_generate(seq2seq):
    handle, model, tokenizer = seq2seq
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            expected = model.generate(**ids, max_new_tokens=12, do_sample=False)[0, 1:].tolist()
        result = generation.generate(handle, GenerationRequest(prompt, max_new_tokens=12))
        assert list(result.token_ids) == expected[: len(result.token_ids)], prompt
        assert result.prompt_tokens == ids.input_ids.shape[1]
        assert result.text == result.completion, "return_full_text has no effect on an encoder-decoder model"


def test_max_length_counts_the_output_with_its_start_token(seq2seq):
    handle, _, _ = seq2seq
    result = generation.generate(handle, GenerationRequest(PROMPTS[1], max_length=5, ignore_eos=True))
    assert len(result.token_ids) == 4  # as transformers: max_length covers the decoder start token too


def test_a_resumed_generation_continues_where_another_backend_stopped(seq2seq):
    handle, _, _ = seq2seq
    whole = generation.generate(handle, GenerationRequest(PROMPTS[0], max_new_tokens=10, ignore_eos=True))
    resumed = GenerationRequest(PROMPTS[0], max_new_tokens=10, ignore_eos=True, resume_ids=whole.token_ids[:4])
    assert generation.generate(handle, resumed).token_ids == whole.token_ids


def test_forward_gives_the_decoder_logits_of_transformers(seq2seq):
    handle, model, tokenizer = seq2seq
    ids = tokenizer(list(PROMPTS[:2]), return_tensors="pt", padding=True)
    decoder = torch.tensor([[handle.decoder_start_id, 5, 6], [handle.decoder_start_id, 7, 8]])
    with torch.no_grad():
        expected = model(**ids, decoder_input_ids=decoder).logits.numpy()
    inputs = {"input_ids": ids.input_ids, "attention_mask": ids.attention_mask, "decoder_input_ids": decoder}
    logits = generation.forward(handle, inputs)["logits"]
    assert logits.shape == (2, 3, model.config.vocab_size)
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_the_seq2seq_model_type_loads_only_an_encoder_decoder_model(tiny_models, tiny_seq2seq_models):
    handle = loading.load(LoadRequest("t5", "seq2seq", tiny_seq2seq_models["t5"], True, "cpu"))
    assert handle.seq2seq and handle.batcher is None
    with pytest.raises(ModelLoadError, match="is_encoder_decoder"):
        loading.load(LoadRequest("gpt2", "seq2seq", tiny_models["gpt2"], True, "cpu"))


def test_an_encoder_decoder_model_without_a_start_token_is_refused(tiny_seq2seq_models, tmp_path):
    import json
    import shutil

    path = Path(shutil.copytree(tiny_seq2seq_models["t5"], tmp_path / "t5"))
    for name in ("config.json", "generation_config.json"):
        config = json.loads((path / name).read_text())
        config["decoder_start_token_id"] = None
        (path / name).write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="decoder_start_token_id"):
        loading.load(LoadRequest("t5", "transformers", str(path), True, "cpu"))
