"""Batched decoding on real tiny models: each sequence of a batch gets the tokens it gets alone."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from muai_core.batching import BatchedSequence, Chunk
from muai_core.contracts import GenerationRequest, LoadRequest
from muai_core.errors import PartialGeneration, UnsupportedRequest
from muai_core.testing.threads import in_threads as run_in_threads
from muai_pytorch import generation, loading
from muai_pytorch.batch import SlotEngine

in_threads = partial(run_in_threads, timeout_s=60)

ARCHS = ("gpt2", "llama")
NEW = 12


def alone(model, prompt: list[int], new: int = NEW) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False
    )
    return out[0, len(prompt) :].tolist()


class Greedy:
    """One sequence driven by hand: its next chunk, and its tokens from the logits it gets."""

    def __init__(self, engine: SlotEngine, number: int, prompt: list[int]) -> None:
        self.sequence = BatchedSequence(None, number, len(prompt) + NEW, None)
        assert engine.admit(self.sequence, np.array(prompt))
        self.pending, self.position, self.tokens = list(prompt), 0, []

    def chunk(self, size: int | None = None) -> Chunk:
        take = self.pending[: size or len(self.pending)]
        chunk = Chunk(self.sequence, np.array(take, dtype=np.int64), self.position, len(take) == len(self.pending))
        self.pending, self.position = self.pending[len(take) :], self.position + len(take)
        return chunk

    def took(self, logits: np.ndarray) -> None:
        self.tokens.append(int(np.argmax(logits)))
        self.pending = self.tokens[-1:]


def step(engine: SlotEngine, chunks: list[tuple[Greedy, Chunk]]) -> None:
    rows = iter(engine.run([chunk for _, chunk in chunks]))
    for greedy, chunk in chunks:
        if chunk.last:
            greedy.took(next(rows))


@pytest.mark.parametrize("arch", ARCHS)
def test_sequences_joining_at_different_times_decode_as_they_do_alone(tiny_models, arch):
    model = AutoModelForCausalLM.from_pretrained(tiny_models[arch]).eval()
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, model.config.vocab_size, n).tolist() for n in (5, 11, 3, 17)]
    engine = SlotEngine(model, "cpu", 128)
    a, b = Greedy(engine, 0, prompts[0]), Greedy(engine, 1, prompts[1])
    step(engine, [(a, a.chunk())])
    step(engine, [(a, a.chunk()), (b, b.chunk())])  # a decodes while b's prompt runs
    for _ in range(3):
        step(engine, [(b, b.chunk()), (a, a.chunk())])  # rows at different lengths, slots out of order
    c = Greedy(engine, 2, prompts[2])
    step(engine, [(a, a.chunk()), (c, c.chunk()), (b, b.chunk())])
    while len(a.tokens) < NEW:
        step(engine, [(s, s.chunk()) for s in (a, b, c) if len(s.tokens) < NEW])
    engine.release(a.sequence)  # a's slot goes to d, which joins with its prompt in two chunks
    d = Greedy(engine, 3, prompts[3])
    assert d.sequence.state == a.sequence.state
    step(engine, [(b, b.chunk()), (d, d.chunk(7))])
    while any(len(s.tokens) < NEW for s in (b, c, d)):
        step(engine, [(s, s.chunk()) for s in (c, d, b) if len(s.tokens) < NEW])
    assert [s.tokens for s in (a, b, c, d)] == [alone(model, p) for p in prompts]
    for s in (b, c, d):
        engine.release(s.sequence)
    assert engine.held == 0 and engine.cache.keys == {}


def load(path: str) -> loading.PyTorchModel:
    return loading.load(LoadRequest("tiny", "transformers", path, is_local=True, device="cpu"))


def slow(piece: str) -> None:
    time.sleep(0.005)  # a slow reader: the generations overlap


@pytest.mark.parametrize("arch", ARCHS)
def test_concurrent_requests_share_batches_and_each_gets_its_greedy_tokens(tiny_models, arch):
    handle = load(tiny_models[arch])
    prompts = ["Hello", "The capital of France is", "muai runs language models on PyTorch and OpenVINO", "0 1 2"]
    requests = [GenerationRequest(prompt=p, max_new_tokens=NEW, ignore_eos=True, streamer=slow) for p in prompts]
    expected = [generation.generate(handle, r).token_ids for r in requests]
    assert handle.batcher.stats()["peak_running"] == 1

    def run(index: int):
        time.sleep(0.01 * index)  # each joins a batch already running
        return generation.generate(handle, requests[index]).token_ids

    assert in_threads(len(prompts), run) == expected
    assert handle.batcher.stats()["peak_running"] > 1
    assert handle.engine.held == 0


def test_sampling_in_a_batch_is_reproducible_with_a_seed(tiny_models):
    handle = load(tiny_models["llama"])
    request = GenerationRequest(prompt="Hello", max_new_tokens=NEW, do_sample=True, seed=7, streamer=slow)
    tokens = in_threads(4, lambda index: generation.generate(handle, request).token_ids)
    assert len(set(tokens)) == 1 and tokens[0] == generation.generate(handle, request).token_ids


def test_a_request_stopped_early_frees_its_slot_at_once(tiny_models):
    handle = load(tiny_models["gpt2"])
    engine = handle.engine
    held = []

    def streamer(piece: str) -> bool:
        held.append(engine.held)
        return False  # stop after the first token

    result = generation.generate(handle, GenerationRequest(prompt="Hello", max_new_tokens=50, streamer=streamer))
    assert result.finish_reason == "stopped" and held == [1]
    assert engine.held == 0 and engine.cache.keys == {}


def test_a_failing_batched_forward_fails_each_request_and_the_model_serves_on(tiny_models, monkeypatch):
    handle = load(tiny_models["gpt2"])
    forward = type(handle.model).forward

    def fail_on_batches(self, input_ids=None, **kwargs):
        if input_ids.shape[0] > 1:
            raise RuntimeError("injected: the batched forward broke")
        return forward(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(type(handle.model), "forward", fail_on_batches)
    request = GenerationRequest(prompt="Hello", max_new_tokens=40, ignore_eos=True, streamer=slow)
    results = in_threads(3, lambda index: generation.generate(handle, request))
    failed = [r for r in results if isinstance(r, PartialGeneration)]
    assert failed and all("injected: the batched forward broke" in r.message for r in failed)
    assert all(isinstance(r, PartialGeneration) or len(r.token_ids) == 40 for r in results)
    assert handle.engine.held == 0
    monkeypatch.undo()
    assert len(generation.generate(handle, request).token_ids) == 40


def test_a_new_sequence_waits_when_the_kv_bound_is_reached_but_one_alone_always_runs(tiny_models):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]).eval()
    engine = SlotEngine(model, "cpu", 128, kv_bytes=1)
    first, second = (BatchedSequence(None, n, 20, None) for n in range(2))
    assert engine.admit(first, np.array([1, 2]))
    assert not engine.admit(second, np.array([1, 2]))
    engine.release(first)
    assert engine.admit(second, np.array([1, 2]))


def test_a_sequence_longer_than_the_context_is_unsupported(tiny_models):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["gpt2"]).eval()
    engine = SlotEngine(model, "cpu", 128)
    with pytest.raises(UnsupportedRequest, match="needs 129 positions; the model holds 128"):
        engine.admit(BatchedSequence(None, 0, 129, None), np.array([1]))
