"""Choosing the next token: banned ids (``ignore_eos``) never come out, greedy or sampled."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from muai_core.contracts import GenerationRequest
from muai_core.decoding import decode_loop
from muai_core.sampling import next_token

logits = arrays(np.float32, st.integers(2, 40), elements=st.floats(-20, 20, width=32))


@settings(max_examples=200)
@given(logits, st.data())
def test_greedy_takes_the_best_id_that_is_not_banned(scores, data):
    banned = data.draw(st.lists(st.integers(0, scores.size - 1), max_size=scores.size - 1, unique=True))
    allowed = np.setdiff1d(np.arange(scores.size), banned)
    request = GenerationRequest.from_kwargs("x", max_new_tokens=1)
    token = next_token(scores, request, np.random.default_rng(0), banned)
    assert token not in banned
    assert scores[token] == scores[allowed].max()


@settings(max_examples=200)
@given(logits, st.data(), st.integers(0, 2**32 - 1))
def test_a_sample_is_never_a_banned_id(scores, data, seed):
    banned = data.draw(st.lists(st.integers(0, scores.size - 1), max_size=scores.size - 1, unique=True))
    request = GenerationRequest.from_kwargs(
        "x",
        max_new_tokens=1,
        temperature=data.draw(st.floats(0.1, 3)),
        top_k=data.draw(st.integers(0, scores.size)),
        top_p=data.draw(st.floats(0.05, 1)),
    )
    assert next_token(scores, request, np.random.default_rng(seed), banned) not in banned


def test_the_logits_a_step_returns_are_not_changed():
    scores = np.array([0.0, 5.0, 1.0], dtype=np.float32)
    kept = scores.copy()
    request = GenerationRequest.from_kwargs("x", max_new_tokens=1)
    assert next_token(scores, request, np.random.default_rng(0), [1]) == 2
    np.testing.assert_array_equal(scores, kept)


def test_ignore_eos_runs_the_whole_budget_on_the_second_best_id():
    eos = 3
    scores = np.array([0.0, 1.0, 2.0, 9.0], dtype=np.float32)  # EOS would win every step
    request = GenerationRequest.from_kwargs("x", max_new_tokens=5, ignore_eos=True)
    result = decode_loop(lambda ids: scores, [0], request, lambda ids: "", eos_ids={eos})
    assert result.token_ids == (2,) * 5
    assert result.finish_reason == "length"
    plain = GenerationRequest.from_kwargs("x", max_new_tokens=5)
    stopped = decode_loop(lambda ids: scores, [0], plain, lambda ids: "", eos_ids={eos})
    assert stopped.token_ids == (eos,)
    assert stopped.finish_reason == "eos"
