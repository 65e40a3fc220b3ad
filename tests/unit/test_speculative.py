"""Prompt-lookup decoding through the step batcher: the tokens of plain decoding in fewer steps, the same
sampling distribution, every stopping rule exact, and plain decoding where the engine cannot verify."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muai_core.batching import StepBatcher
from muai_core.contracts import GenerationRequest
from muai_core.decoding import decode_loop
from muai_core.speculative import PromptLookup

VOCAB = 12


def next_probs(history: list[int]) -> np.ndarray:
    """A toy model that loops: what follows depends on the last two tokens only, with a clear favourite."""
    a, b = history[-2] if len(history) > 1 else 0, history[-1]
    probs = np.full(VOCAB, 0.02)
    probs[(a * 5 + b * 7 + 3) % VOCAB] += 0.5
    probs[(a + b) % VOCAB] += 0.26
    return probs / probs.sum()


class ToyEngine:
    """A ``BatchEngine`` over ``next_probs`` (logits: log-probabilities); with ``verifies`` it has ``truncate``."""

    def __init__(self, pause_s: float = 0.0005) -> None:
        self.batches = 0
        self.every_chunks = 0
        self.pause_s = pause_s  # a step takes a while: steps of other threads pile up

    def admit(self, sequence, tokens) -> bool:
        sequence.state = []
        return True

    def run(self, chunks):
        self.batches += 1
        time.sleep(self.pause_s)
        rows = []
        for chunk in chunks:
            history = chunk.sequence.state
            assert chunk.start == len(history), "a chunk must start where its sequence was left (or rolled back to)"
            logits = []
            for token in chunk.tokens:
                history.append(int(token))
                logits.append(np.log(next_probs(history)).astype(np.float32))
            if chunk.every:
                self.every_chunks += 1
                rows.append(np.stack(logits))
            elif chunk.last:
                rows.append(logits[-1])
        return rows

    def release(self, sequence) -> None:
        pass


class VerifyingEngine(ToyEngine):
    def truncate(self, sequence, length: int) -> None:
        del sequence.state[length:]


def run(engine, prompt: list[int], eos: tuple[int, ...] = (11,), max_batch_tokens: int = 512, **kwargs):
    request = GenerationRequest(prompt="x", **{"max_new_tokens": 20, **kwargs})
    batcher = StepBatcher(engine, max_batch_tokens=max_batch_tokens)
    budget = request.new_token_budget(len(prompt))
    with batcher.sequence(len(prompt) + budget, request.cancel) as step:
        return decode_loop(step, prompt, request, lambda ids: "".join(chr(97 + i) for i in ids), eos_ids=eos)


prompts = st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=24)


@settings(max_examples=60, deadline=None)
@given(
    prompt=prompts,
    k=st.integers(1, 8),
    new=st.integers(1, 30),
    min_new=st.integers(0, 6),
    stop=st.sampled_from([(), ("bd",), ("ka", "e")]),
    stop_ids=st.sampled_from([(), (4,)]),
    penalty=st.sampled_from([1.0, 1.3]),
)
def test_greedy_prompt_lookup_gives_the_tokens_of_plain_decoding(prompt, k, new, min_new, stop, stop_ids, penalty):
    kwargs = dict(
        max_new_tokens=new, min_new_tokens=min(min_new, new), stop=stop, stop_token_ids=stop_ids,
        repetition_penalty=penalty,
    )  # fmt: skip
    plain = run(ToyEngine(), prompt, **kwargs)
    engine = VerifyingEngine()
    fast = run(engine, prompt, prompt_lookup=k, **kwargs)
    assert (fast.token_ids, fast.text, fast.finish_reason) == (plain.token_ids, plain.text, plain.finish_reason)
    assert fast.accepted_tokens <= fast.draft_tokens
    assert fast.verify_calls == engine.every_chunks


def test_prompt_lookup_takes_fewer_steps_and_reports_what_it_accepted():
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2
    plain_engine, engine = ToyEngine(), VerifyingEngine()
    plain = run(plain_engine, prompt, max_new_tokens=40, ignore_eos=True)
    fast = run(engine, prompt, max_new_tokens=40, ignore_eos=True, prompt_lookup=6)
    assert fast.token_ids == plain.token_ids and len(fast.token_ids) == 40
    assert fast.verify_calls > 0 and fast.accepted_tokens > fast.verify_calls  # more than one token a call
    assert engine.batches == plain_engine.batches - fast.accepted_tokens
    assert engine.batches < plain_engine.batches * 0.75  # a wider step costs the toy nothing: many are accepted


def test_a_verify_step_cut_to_the_batch_budget_gives_the_same_tokens():
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2
    plain = run(ToyEngine(), prompt, max_new_tokens=30, ignore_eos=True)
    fast = run(VerifyingEngine(), prompt, max_new_tokens=30, ignore_eos=True, prompt_lookup=6, max_batch_tokens=3)
    assert fast.token_ids == plain.token_ids and fast.verify_calls > 0


def test_an_engine_without_truncate_decodes_token_by_token():
    engine = ToyEngine()
    result = run(engine, [1, 2, 3, 1, 2, 3], prompt_lookup=4, ignore_eos=True)
    assert result.verify_calls == 0 and engine.every_chunks == 0
    assert engine.batches == 20


def test_streaming_and_a_streamer_stop_see_each_token_once_in_order():
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2
    plain = run(ToyEngine(), prompt, max_new_tokens=30, ignore_eos=True)
    pieces: list[str] = []

    def streamer(piece: str) -> bool:
        pieces.append(piece)
        return len(pieces) < 17

    fast = run(VerifyingEngine(), prompt, max_new_tokens=30, ignore_eos=True, prompt_lookup=8, streamer=streamer)
    assert fast.finish_reason == "stopped" and len(fast.token_ids) == 17
    assert fast.token_ids == plain.token_ids[:17] and "".join(pieces) == fast.completion


def test_concurrent_speculative_and_plain_sequences_share_batches_and_each_gets_its_own_tokens():
    engine = VerifyingEngine()
    batcher = StepBatcher(engine)
    prompts = [[(i + j) % VOCAB for j in range(5 + i)] * 2 for i in range(6)]
    results: list = [None] * 6

    def work(i: int) -> None:
        request = GenerationRequest(prompt="x", max_new_tokens=25, ignore_eos=True, prompt_lookup=4 * (i % 2))
        with batcher.sequence(len(prompts[i]) + 25) as step:
            results[i] = decode_loop(step, prompts[i], request, str, eos_ids=(11,))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for prompt, result in zip(prompts, results, strict=True):
        assert result.token_ids == run(ToyEngine(), prompt, max_new_tokens=25, ignore_eos=True).token_ids


def test_sampling_with_prompt_lookup_keeps_the_distribution():
    """The third new token's distribution, exactly computed, against 2000 seeded samples (chi-square)."""
    prompt = [0, 1]
    for _ in range(12):  # the model's favourite path, so that candidates are often right
        prompt.append(int(np.argmax(next_probs(prompt))))
    exact: dict[tuple[int, ...], float] = {(): 1.0}
    for _ in range(3):
        grown: dict[tuple[int, ...], float] = {}
        for tokens, p in exact.items():
            for token, q in enumerate(next_probs(prompt + list(tokens))):
                grown[(*tokens, token)] = p * q
        exact = grown
    third = np.zeros(VOCAB)
    for tokens, p in exact.items():
        third[tokens[2]] += p
    counts, accepted = np.zeros(VOCAB), 0
    for seed in range(2000):
        result = run(VerifyingEngine(0), prompt, max_new_tokens=3, do_sample=True, seed=seed, prompt_lookup=3, eos=())
        counts[result.token_ids[2]] += 1
        accepted += result.accepted_tokens
    assert accepted > 500, "the test needs candidates that are accepted"
    expected = third * counts.sum()
    keep = expected > 5
    chi2 = (((counts - expected) ** 2 / expected)[keep]).sum()
    assert chi2 < 31.3, (chi2, counts, expected)  # p = 0.001 for 11 degrees of freedom


def test_prompt_lookup_proposes_what_followed_the_latest_earlier_occurrence():
    lookup = PromptLookup([1, 2, 3, 4, 9, 2, 3, 5, 6, 1, 2])
    assert lookup.propose(3) == [3, 4, 9]  # "1 2" occurred at the start
    lookup.append(3)
    assert lookup.propose(2) == [4, 9]  # "1 2 3" wins over "2 3" (last seen before "5 6")
    assert PromptLookup([1, 2, 3]).propose(4) == []


def test_free_proposals_take_every_place_allowed_where_that_pays_and_costly_ones_fewer():
    from muai_core.speculative import _Draft

    lookup, draft = _Draft(8, free=True), _Draft(8)
    for proposer, each in ((lookup, 0.0), (draft, 0.1)):
        proposer.timed(1, 1.0)
        proposer.timed(9, 1.4)
        proposer.proposed(8, 8 * each)
        proposer.update(8, 3)  # three accepted, the fourth rejected: a per-candidate rate of about 0.68
    assert lookup.wanted(100) == 8 and lookup.wanted(5) == 4  # the last place is the step's own token
    assert 1 <= draft.wanted(100) < 8  # each candidate costs a tenth of a step: fewer pay
    for _ in range(5):
        lookup.update(8, 0)  # a rate of about 0.24: eight candidates cost more than they bring, one still pays
    assert 1 <= lookup.wanted(100) < 8
    for _ in range(10):
        lookup.update(8, 0)
    assert lookup.wanted(100) == 0  # nothing pays: a pause


@pytest.mark.parametrize("value", [-1, 65, 1.5, True])
def test_prompt_lookup_is_checked(value):
    from muai_core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="prompt_lookup"):
        GenerationRequest.from_kwargs("hi", prompt_lookup=value)


def test_the_monitor_reports_the_acceptance_rate_and_tokens_per_verify_call():
    from muai_core.monitor import PerformanceMonitor

    monitor = PerformanceMonitor()
    monitor.record_inference("b", "m", 1.0, 20, speculation=(4, 16, 8))
    monitor.record_inference("b", "m", 1.0, 20, speculation=(1, 4, 0))
    monitor.record_inference("b", "m", 1.0, 20)
    stats = monitor.get_backend_stats("b", "m")
    assert stats["acceptance_rate"] == pytest.approx(8 / 20)
    assert stats["tokens_per_verify"] == pytest.approx((8 + 5) / 5)
    monitor.record_inference("c", "m", 1.0, 20)
    assert monitor.get_backend_stats("c")["acceptance_rate"] is None


def test_a_models_prompt_lookup_default_is_checked_and_kept_apart_from_its_paths():
    from muai_core.config import parse_config
    from muai_core.errors import ConfigurationError

    config = parse_config({"models": {"m": {"prompt_lookup": 6, "pytorch_path": "models/m"}}})
    assert config.prompt_lookup == {"m": 6} and dict(config.models["m"]) == {"pytorch_path": "models/m"}
    for bad in (-1, 65, "8", True):
        with pytest.raises(ConfigurationError, match=r"models\.m\.prompt_lookup"):
            parse_config({"models": {"m": {"prompt_lookup": bad}}})


def test_a_failed_rollback_fails_its_own_sequence_only():
    from muai_core.errors import PartialGeneration

    class FailingRollback(VerifyingEngine):
        def truncate(self, sequence, length: int) -> None:
            raise RuntimeError("injected rollback fault")

    batcher = StepBatcher(FailingRollback())
    prompt = [9, 7, 5, 2, 3, 0, 0, 0, 1, 8, 7, 10, 5, 6, 10, 8]  # some of its candidates are rejected
    results: dict = {}

    def work(lookup: int) -> None:
        request = GenerationRequest(prompt="x", max_new_tokens=60, ignore_eos=True, prompt_lookup=lookup)
        with batcher.sequence(len(prompt) + 60) as step:
            try:
                results[lookup] = decode_loop(step, prompt, request, str, eos_ids=(11,))
            except PartialGeneration as exc:
                results[lookup] = exc

    threads = [threading.Thread(target=work, args=(lookup,)) for lookup in (0, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert isinstance(results[8], PartialGeneration) and "injected rollback fault" in str(results[8])
    assert results[0].token_ids == run(ToyEngine(), prompt, max_new_tokens=60, ignore_eos=True).token_ids


def test_rounds_that_accept_too_little_for_their_width_keep_the_pauses_growing():
    from muai_core.speculative import _Draft

    draft = _Draft(8, free=True)
    draft.timed(1, 1.0)
    draft.timed(9, 5.0)  # each more position costs half a plain step: one accepted of eight does not pay
    pauses, waited = [], 0
    for _ in range(60):
        if draft.wanted(1000):
            pauses.append(waited)
            waited = 0
            draft.update(8, 1)
        else:
            waited += 1
    assert pauses[:6] == [1, 2, 4, 8, 16, 16], pauses  # doubling up to MAX_PAUSE
