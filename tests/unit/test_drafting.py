"""Draft-model speculative decoding through the step batcher on toy models: plain decoding's tokens (greedy),
the same distribution (sampling), and plain decoding with a recorded reason where the draft cannot serve."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from muai_core.batching import StepBatcher
from muai_core.contracts import GenerationRequest
from muai_core.decoding import decode_loop
from muai_core.drafting import DraftModel
from muai_core.errors import InvalidInputError
from tests.unit.test_speculative import VOCAB, ToyEngine, VerifyingEngine, next_probs, prompts
from tests.unit.test_speculative import run as run_with_batcher


def draft_probs(history: list[int]) -> np.ndarray:
    """Another toy model: it shares the target's second choice only, so many of its candidates are rejected."""
    probs = np.full(VOCAB, 0.03)
    probs[(history[-1] * 3 + 1) % VOCAB] += 0.4
    probs[(history[-2] + history[-1]) % VOCAB if len(history) > 1 else 0] += 0.3
    return probs / probs.sum()


class DraftEngine(VerifyingEngine):
    """A ``VerifyingEngine`` over ``draft_probs`` (``same``: over the target's own ``next_probs``)."""

    def __init__(self, same: bool = False) -> None:
        super().__init__(0)
        self.probs = next_probs if same else draft_probs
        self.calls = 0

    def run(self, chunks):
        self.calls += 1
        rows = []
        for chunk in chunks:
            history = chunk.sequence.state
            assert chunk.start == len(history)
            for token in chunk.tokens:
                history.append(int(token))
            rows.append(np.log(self.probs(history)).astype(np.float32))
        return rows


def drafter(engine, reasons: list[str]) -> DraftModel:
    batcher = StepBatcher(engine)
    return DraftModel("toy-draft", lambda longest, cancel: batcher.sequence(longest, cancel), reasons.append)


def run(target, prompt, draft=None, reasons=None, eos=(11,), **kwargs):
    """``test_speculative.run`` with ``draft`` (an engine) as the request's draft model."""
    if draft is not None:
        kwargs["drafter"] = drafter(draft, [] if reasons is None else reasons)
    return run_with_batcher(target, prompt, eos, **kwargs)


@settings(max_examples=60, deadline=None)
@given(
    prompt=prompts,
    k=st.integers(1, 8),
    new=st.integers(1, 30),
    min_new=st.integers(0, 6),
    stop=st.sampled_from([(), ("bd",), ("ka", "e")]),
    penalty=st.sampled_from([1.0, 1.3]),
    same=st.booleans(),
)
def test_greedy_decoding_with_a_draft_gives_the_tokens_of_plain_decoding(prompt, k, new, min_new, stop, penalty, same):
    kwargs = dict(max_new_tokens=new, min_new_tokens=min(min_new, new), stop=stop, repetition_penalty=penalty)
    plain = run(ToyEngine(), prompt, **kwargs)
    target, reasons = VerifyingEngine(), []
    fast = run(target, prompt, DraftEngine(same), reasons, draft_tokens=k, **kwargs)
    assert (fast.token_ids, fast.text, fast.finish_reason) == (plain.token_ids, plain.text, plain.finish_reason)
    assert fast.accepted_tokens <= fast.draft_tokens and fast.verify_calls == target.every_chunks
    assert reasons == []
    if same and penalty == 1.0:  # the target as its own draft: every candidate checked is accepted (those of
        assert fast.draft_tokens - fast.accepted_tokens <= k  # the last round may go unchecked: generation ended)


def test_a_draft_that_agrees_saves_target_steps_and_one_that_does_not_is_paused():
    prompt = [3, 1, 4, 1, 5]
    plain_engine = ToyEngine()
    plain = run(plain_engine, prompt, max_new_tokens=40, ignore_eos=True)
    same, other = VerifyingEngine(), VerifyingEngine()
    agreeing = run(same, prompt, DraftEngine(same=True), max_new_tokens=40, ignore_eos=True)
    differing = run(other, prompt, DraftEngine(), max_new_tokens=40, ignore_eos=True)
    assert agreeing.token_ids == differing.token_ids == plain.token_ids
    assert same.batches == plain_engine.batches - agreeing.accepted_tokens < plain_engine.batches / 2
    assert differing.accepted_tokens < differing.draft_tokens / 2
    assert differing.verify_calls < 20  # mostly rejected: proposing pauses, the target steps alone


def test_sampling_with_a_draft_keeps_the_distribution():
    """The third new token's distribution, exactly computed, against 2000 seeded samples (chi-square): the
    draft's candidates are drawn from its own distribution q and accepted with min(1, p/q)."""
    prompt = [0, 1, 5]
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
    counts, accepted, proposed = np.zeros(VOCAB), 0, 0
    for seed in range(2000):
        result = run(VerifyingEngine(0), prompt, DraftEngine(), max_new_tokens=3, do_sample=True, seed=seed, eos=())
        counts[result.token_ids[2]] += 1
        accepted, proposed = accepted + result.accepted_tokens, proposed + result.draft_tokens
    assert 500 < accepted < proposed - 500, "the test needs candidates that are accepted and ones that are not"
    expected = third * counts.sum()
    keep = expected > 5
    chi2 = (((counts - expected) ** 2 / expected)[keep]).sum()
    assert chi2 < 31.3, (chi2, counts, expected)  # p = 0.001 for 11 degrees of freedom


def test_a_draft_without_rollback_leaves_plain_decoding_and_says_why():
    class NoRollback(DraftEngine):
        truncate = None

    reasons: list[str] = []
    plain = run(ToyEngine(), [1, 2, 3], max_new_tokens=12, ignore_eos=True)
    result = run(VerifyingEngine(), [1, 2, 3], NoRollback(), reasons, max_new_tokens=12, ignore_eos=True)
    assert result.token_ids == plain.token_ids and result.verify_calls == 0
    assert reasons == ["its backend gives no decode step that can roll back (on this path)"]


def test_a_draft_without_a_step_falls_back_to_prompt_lookup_when_asked():
    reasons: list[str] = []
    request = GenerationRequest(prompt="x", max_new_tokens=30, ignore_eos=True, prompt_lookup=6)
    from dataclasses import replace

    request = replace(request, drafter=DraftModel("none", lambda longest, cancel: None, reasons.append))
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2
    with StepBatcher(VerifyingEngine()).sequence(len(prompt) + 30) as step:
        result = decode_loop(step, prompt, request, str, eos_ids=(11,))
    assert result.token_ids == run(ToyEngine(), prompt, max_new_tokens=30, ignore_eos=True).token_ids
    assert result.verify_calls > 0 and len(reasons) == 1


def test_a_target_that_cannot_verify_decodes_token_by_token_and_says_why():
    reasons: list[str] = []
    target = ToyEngine()
    result = run(target, [1, 2, 3], DraftEngine(), reasons, max_new_tokens=10, ignore_eos=True)
    assert result.verify_calls == 0 and target.batches == 10
    assert reasons and "cannot check several tokens" in reasons[0]


def test_a_draft_failing_mid_generation_is_dropped_and_the_target_decodes_on():
    class Failing(DraftEngine):
        def run(self, chunks):
            if self.calls == 12:  # in the second round
                raise RuntimeError("injected draft fault")
            return super().run(chunks)

    reasons: list[str] = []
    plain = run(ToyEngine(), [4, 2], max_new_tokens=30, ignore_eos=True)
    draft = Failing(same=True)
    result = run(VerifyingEngine(), [4, 2], draft, reasons, max_new_tokens=30, ignore_eos=True)
    assert result.token_ids == plain.token_ids and result.verify_calls > 0
    assert draft.calls == 12 and len(reasons) == 1 and "injected draft fault" in reasons[0]


def test_a_draft_with_another_vocabulary_is_refused():
    class Wider(DraftEngine):
        def run(self, chunks):
            return [np.append(row, 0.0) for row in super().run(chunks)]

    with pytest.raises(InvalidInputError, match="toy-draft.*vocabularies differ"):
        run(VerifyingEngine(), [1, 2], Wider(), max_new_tokens=5)


def test_proposing_pauses_where_the_drafts_cost_eats_the_gain():
    from muai_core.speculative import _Draft

    cheap, dear = _Draft(8), _Draft(8)
    for draft, cost in ((cheap, 0.0), (dear, 0.6)):
        draft.timed(1, 1.0)
        draft.timed(5, 1.2)
        draft.proposed(4, 4 * cost)
        draft.update(4, 2)
    assert cheap.wanted(100) > 1 and dear.wanted(100) == 0


@pytest.mark.parametrize("value", [0, 65, 1.5, True])
def test_draft_tokens_is_checked(value):
    with pytest.raises(InvalidInputError, match="draft_tokens"):
        GenerationRequest.from_kwargs("hi", draft_tokens=value)


def test_a_models_draft_is_checked():
    from muai_core.config import parse_config
    from muai_core.errors import ConfigurationError

    config = parse_config({"models": {"m": {"draft": "small", "draft_tokens": 4, "pytorch_path": "models/m"}}})
    assert config.drafts == {"m": "small"} and config.draft_tokens == {"m": 4}
    assert dict(config.models["m"]) == {"pytorch_path": "models/m"}
    with pytest.raises(ConfigurationError, match=r"models\.m\.draft names the model itself"):
        parse_config({"models": {"m": {"draft": "m"}}})
    for bad in (3, None, ["small"]):
        with pytest.raises(ConfigurationError, match=r"models\.m\.draft must be the name of another model"):
            parse_config({"models": {"m": {"draft": bad}}})
    with pytest.raises(ConfigurationError, match=r"models\.m\.draft_tokens must be an int from 1"):
        parse_config({"models": {"m": {"draft_tokens": 0}}})
